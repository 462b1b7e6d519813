"""A small CNN digit classifier, trained once and cached, for digit sample metrics.

The classifier plays the role Inception plays for FID: its 128-dimensional penultimate
features give a Frechet distance between generated and real 8x8 digits, and its
predictions give the class histogram behind mode coverage. It is trained by the
package itself, deterministically, on the default train split of
:func:`energyflow.domains.image.data.load_digits_split` (1,438 images; seed 0, fraction
0.2), so no weights are downloaded:

- recipe (:data:`RECIPE`): Adam (lr 2e-3) for 15 epochs of batch 64, each batch
  shifted at random by up to one pixel (blank border filled with -1), seed 0;
- inside :func:`torch.random.fork_rng` (the global RNG is untouched) with one thread and
  :func:`torch.use_deterministic_algorithms` on (both restored afterwards); batches
  and shifts come from an explicit ``torch.Generator``;
- 5-15 seconds on one CPU thread (measured on a loaded 2-core machine); 99.4%
  accuracy on the 359 held-out digits (98.7% on the training digits).

The weights are cached in ``$ENERGYFLOW_CACHE`` (default ``~/.cache/energyflow``) as
``digit_classifier-<key>.pt``, where ``<key>`` hashes the recipe and the training data,
so changing either retrains. Files are written atomically (``torch.save`` to a
temporary file, then :func:`os.replace`) and read back with ``weights_only=True``; a missing, corrupt or mismatched file is retrained and rewritten.
Within one process the classifier is also kept in memory.

Example:
    >>> import tempfile, torch
    >>> from energyflow.domains.image import load_digits_split
    >>> with tempfile.TemporaryDirectory() as d:
    ...     net = get_digit_classifier(cache_dir=d)
    >>> split = load_digits_split()
    >>> digit_features(split.test_images[:5]).shape
    torch.Size([5, 128])
    >>> bool((predict_digits(split.test_images) == split.test_labels).double().mean() > 0.95)
    True
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from energyflow import metrics as _metrics
from energyflow.domains.image.data import load_digits_split
from energyflow.cache import cache_dir as cache_dir_of, load_payload, save_payload
from energyflow.errors import InvalidValueError

__all__ = [
    "FEATURE_DIM",
    "RECIPE",
    "DigitClassifier",
    "cache_path",
    "classifier_frechet_distance",
    "digit_features",
    "get_digit_classifier",
    "predict_digits",
    "train_digit_classifier",
]

FEATURE_DIM = 128
"""Width of the penultimate features used for the Frechet distance."""

RECIPE: dict[str, Any] = {
    "version": 1,
    "architecture": "conv16-conv32-pool-conv64-pool-fc128-fc10 relu",
    "split_seed": 0,
    "test_fraction": 0.2,
    "seed": 0,
    "epochs": 15,
    "batch_size": 64,
    "lr": 2e-3,
    "max_shift": 1,
}
"""How the cached classifier is trained; part of the cache key."""

_MEMORY: dict[str, nn.Module] = {}
_TRAIN_CALLS = 0  # incremented by train_digit_classifier; lets tests see cache hits


class DigitClassifier(nn.Module):
    """A small CNN for ``(B, 1, 8, 8)`` digits in ``[-1, 1]``.

    ``conv 1->16, conv 16->32, maxpool, conv 32->64, maxpool`` (3x3, padding 1, ReLU),
    then ``Linear(256, 128) -> ReLU`` (the features) and ``Linear(128, 10)`` (logits).

    Shapes:
        :meth:`forward` ``(B, 1, 8, 8) -> (B, 10)``; :meth:`features` ``-> (B, 128)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 2 * 2, FEATURE_DIM), nn.ReLU(),
        )
        self.classifier = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, ``(B, 1, 8, 8) -> (B, 128)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, ``(B, 1, 8, 8) -> (B, 10)``."""
        return self.classifier(self.body(x))


def _recipe_key(recipe: dict[str, Any]) -> str:
    return _key_of(json.dumps(recipe, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _key_of(recipe_json: str) -> str:
    recipe = json.loads(recipe_json)
    split = load_digits_split(recipe["split_seed"], recipe["test_fraction"])
    h = hashlib.sha256(recipe_json.encode())
    h.update(split.train_images.numpy().tobytes())
    h.update(split.train_labels.numpy().tobytes())
    return h.hexdigest()[:16]


def cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the classifier of the current :data:`RECIPE` is cached.

    Args:
        cache_dir (str | PathLike | None): directory (default ``$ENERGYFLOW_CACHE`` or
            ``~/.cache/energyflow``).

    Example:
        >>> cache_path("/tmp/x").name.startswith("digit_classifier-")
        True
    """
    return cache_dir_of(cache_dir) / f"digit_classifier-{_recipe_key(RECIPE)}.pt"


def _shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shifts each image by up to ``max_shift`` pixels, filling the border with -1."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    rows = (offsets[:, :1] + torch.arange(h)).view(b, 1, h, 1).expand(b, 1, h, w)
    cols = (offsets[:, 1:] + torch.arange(w)).view(b, 1, 1, w).expand(b, 1, h, w)
    flat = padded.flatten(2)
    index = (rows * padded.shape[3] + cols).flatten(2)
    return flat.gather(2, index).view(b, 1, h, w)


def train_digit_classifier(recipe: dict[str, Any] | None = None) -> tuple[DigitClassifier, dict[str, float]]:
    """Trains a :class:`DigitClassifier` from scratch, deterministically (no caching).

    Runs inside ``torch.random.fork_rng`` with one thread and deterministic algorithms;
    the global RNG, thread count and determinism flag are restored afterwards.

    Args:
        recipe (dict | None): training settings (default :data:`RECIPE`).

    Returns:
        tuple[DigitClassifier, dict[str, float]]: the model in eval mode with frozen
        parameters, and ``{"test_accuracy": ..., "train_accuracy": ...}``.
    """
    global _TRAIN_CALLS
    _TRAIN_CALLS += 1
    r = {**RECIPE, **(recipe or {})}
    split = load_digits_split(r["split_seed"], r["test_fraction"])
    x, y = split.train_images, split.train_labels
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        # grad mode on even when called under no_grad / inference_mode (e.g. from a metric)
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(r["seed"])
            model = DigitClassifier()
            gen = torch.Generator().manual_seed(r["seed"])
            opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
            model.train()
            for _ in range(r["epochs"]):
                order = torch.randperm(x.shape[0], generator=gen)
                for start in range(0, x.shape[0], r["batch_size"]):
                    idx = order[start : start + r["batch_size"]]
                    xb = _shift(x[idx], r["max_shift"], gen)
                    loss = nn.functional.cross_entropy(model(xb), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)
    model.eval().requires_grad_(False)
    with torch.no_grad():
        info = {
            "test_accuracy": float((model(split.test_images).argmax(1) == split.test_labels).double().mean()),
            "train_accuracy": float((model(x).argmax(1) == y).double().mean()),
        }
    return model, info


def _load_cached(path: Path, key: str) -> DigitClassifier | None:
    payload = load_payload(path, key)
    if payload is None:
        return None
    model = DigitClassifier()
    try:
        model.load_state_dict(payload["state_dict"])
    except Exception:  # a foreign state dict under the right key: retrain and overwrite it
        return None
    return model.eval().requires_grad_(False)


def _save_atomic(model: DigitClassifier, info: dict[str, float], path: Path, key: str) -> None:
    payload = {"key": key, "recipe": json.dumps(RECIPE, sort_keys=True), "state_dict": model.state_dict(), **info}
    save_payload(payload, path, "the digit classifier")


def get_digit_classifier(
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
) -> DigitClassifier:
    """The package's digit classifier, trained on first use and cached on disk and in memory.

    Args:
        device (torch.device | str): where the returned module lives.
        cache_dir (str | PathLike | None): cache directory (default
            ``$ENERGYFLOW_CACHE`` or ``~/.cache/energyflow``).
        retrain (bool): ignore both caches and train again (rewrites the file).

    Returns:
        DigitClassifier: in eval mode with frozen parameters. It is shared between
        callers in this process: do not modify it.
    """
    key = _recipe_key(RECIPE)
    path = cache_dir_of(cache_dir) / f"digit_classifier-{key}.pt"
    model = None if retrain else _MEMORY.get(key)
    if model is None:
        model = None if retrain else _load_cached(path, key)
        if model is None:
            model, info = train_digit_classifier()
            _save_atomic(model, info, path, key)
        _MEMORY[key] = model
    device = torch.device(device)
    if device.type == "cpu":
        return model
    moved_key = f"{key}@{device}"
    if moved_key not in _MEMORY or retrain:
        _MEMORY[moved_key] = copy.deepcopy(model).to(device)
    return _MEMORY[moved_key]  # type: ignore[return-value]


def _check_digits(x: Tensor, label: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InvalidValueError(f"{label} must be 8x8 digits of shape (B, 1, 8, 8) in [-1, 1], got {shape}")
    return x


def _batched(fn, x: Tensor, batch_size: int) -> Tensor:
    net_device = next(get_digit_classifier().parameters()).device
    outs = [fn(x[i : i + batch_size].to(net_device, torch.float32)) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else fn(x.to(net_device, torch.float32))


@torch.no_grad()
def digit_features(x: Tensor, batch_size: int = 2048) -> Tensor:
    """Penultimate-layer features of the cached digit classifier.

    Args:
        x (Tensor): digits ``(B, 1, 8, 8)`` in ``[-1, 1]`` (not clipped here).
        batch_size (int): images per forward pass.

    Returns:
        Tensor: ``(B, 128)`` float32 on the CPU (no gradient).
    """
    net = get_digit_classifier()
    return _batched(net.features, _check_digits(x, "x").detach().cpu(), batch_size)


@torch.no_grad()
def predict_digits(x: Tensor, batch_size: int = 2048) -> Tensor:
    """Predicted classes of the cached digit classifier, ``(B, 1, 8, 8) -> (B,)`` int64."""
    net = get_digit_classifier()
    return _batched(net, _check_digits(x, "x").detach().cpu(), batch_size).argmax(1)


def classifier_frechet_distance(samples: Tensor, reference: Tensor) -> float:
    """Frechet distance between the classifier features of two sets of digits.

    Gaussians are fitted to :func:`digit_features` of each set (mean and unbiased
    covariance) and compared with
    :func:`energyflow.metrics.frechet_distance_from_features`. Inputs are used as
    given; clip generated samples to ``[-1, 1]`` first if they may leave it.

    Args:
        samples (Tensor): ``(B1, 1, 8, 8)``, ``B1 >= 2``.
        reference (Tensor): ``(B2, 1, 8, 8)``, ``B2 >= 2``.

    Returns:
        float: FD >= 0 (lower is better). The finite-sample value is biased upward
        for small sets: compare numbers computed with equal set sizes.
    """
    f1 = digit_features(_check_digits(samples, "samples"))
    f2 = digit_features(_check_digits(reference, "reference"))
    return _metrics.frechet_distance_from_features(f1, f2)
