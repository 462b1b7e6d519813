"""The AAV pipeline's train-once models: the fitness CNN (oracle and guidance predictor) and the sequence VAE.

- :class:`FitnessCNN`: GGS's CNN on one-hot sequences, ``Conv1d(20 -> 256, k 5)`` ->
  per-position ``Linear(256 -> 512)`` + ReLU -> max over positions -> ``Linear(512 -> 1)``.
  It reads tokens ``(B, L)`` or residue probabilities ``(B, L, 20)`` (the soft decoding
  the design observation differentiates through).
- :class:`SequenceVAE`: a convolutional VAE with a 16-dimensional latent (length
  ``L -> L/2 -> L/4`` by strided convolutions, mirrored by transposed ones).

Three cached trainers build them (``$ENERGYFLOW_CACHE`` or ``~/.cache/energyflow``; the
cache key hashes the recipe and the data file, the file is written atomically, loads use
``weights_only=True``):

- :func:`train_oracle`: the evaluation oracle, on the ground truth less a held-out 10 %
  (its Spearman there is in ``model.metrics``);
- :func:`train_predictor`: the guidance predictor, on the task's own file only (never
  the ground truth: that would leak the oracle's data); its Spearman is measured on the
  ground-truth sequences outside the task file;
- :func:`train_vae`: the VAE of a task, on the task's sequences; its exact and
  per-residue reconstruction on them and on held-out ground-truth sequences.

Example:
    >>> import torch
    >>> cnn = FitnessCNN()
    >>> tokens = torch.randint(20, (3, 28), generator=torch.Generator().manual_seed(0))
    >>> cnn(tokens).shape, torch.allclose(cnn(tokens), cnn(torch.nn.functional.one_hot(tokens, 20).float()))
    (torch.Size([3]), True)
    >>> vae = SequenceVAE()
    >>> mu, logvar = vae.encode(tokens)
    >>> mu.shape, vae.decode(mu).shape
    (torch.Size([3, 16]), torch.Size([3, 28, 20]))
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from energyflow.cache import cache_dir as cache_dir_of
from energyflow.cache import load_payload, save_payload
from energyflow.domains.protein.data import ALPHABET, TASKS, SequenceSet, data_dir, load_ground_truth, load_task
from energyflow.errors import InvalidValueError
from energyflow.metrics import spearman
from energyflow.validation import to_int

__all__ = ["FitnessCNN", "SequenceVAE", "ORACLE_RECIPE", "PREDICTOR_RECIPE", "VAE_RECIPE", "reconstruction",
           "fit_vae", "outside_metrics", "predict", "train_oracle", "train_predictor", "train_vae"]

NUM_TOKENS = len(ALPHABET)


class FitnessCNN(nn.Module):
    """GGS's fitness CNN; predicts raw scores ``(B,)``.

    Args:
        channels (int): convolution channels (256 in GGS).
        hidden (int): per-position hidden width (512 in GGS).
        kernel_size (int): convolution width (5 in GGS).
        mean (float), std (float): the training scores' moments; the network predicts
            standardised scores and the output is ``mean + std * net(x)``.

    Shapes:
        x: ``(B, L)`` integer tokens or ``(B, L, 20)`` probabilities -> ``(B,)``.
    """

    def __init__(self, channels: int = 256, hidden: int = 512, kernel_size: int = 5, mean: float = 0.0,
                 std: float = 1.0) -> None:
        super().__init__()
        self.channels, self.hidden, self.kernel_size = int(channels), int(hidden), int(kernel_size)
        self.conv = nn.Conv1d(NUM_TOKENS, self.channels, self.kernel_size)
        self.embed = nn.Linear(self.channels, self.hidden)
        self.head = nn.Linear(self.hidden, 1)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.metrics: dict[str, Any] = {}

    def standardised(self, x: Tensor) -> Tensor:
        """The standardised prediction ``(B,)``."""
        if not x.is_floating_point():
            x = F.one_hot(x.long(), NUM_TOKENS).to(self.conv.weight.dtype)
        if x.ndim != 3 or x.shape[-1] != NUM_TOKENS or x.shape[1] < self.kernel_size:
            raise InvalidValueError(f"FitnessCNN takes (B, L) tokens or (B, L, {NUM_TOKENS}) probabilities with "
                                    f"L >= {self.kernel_size}, got {tuple(x.shape)}")
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L - k + 1, channels)
        h = F.relu(self.embed(h)).amax(dim=1)  # (B, hidden)
        return self.head(h).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.mean + self.std * self.standardised(x)

    def config(self) -> dict[str, Any]:
        return {"channels": self.channels, "hidden": self.hidden, "kernel_size": self.kernel_size}


class SequenceVAE(nn.Module):
    """A convolutional VAE of fixed-length sequences.

    Args:
        seq_len (int): ``L``, a multiple of 4.
        latent_dim (int): the latent dimension (16, as the paper's).
        embedding (int): token embedding width.
        width (int): channels of the first convolution (then ``width/2``, ``width/4``).

    Shapes:
        encode: ``(B, L)`` tokens -> ``mu, logvar`` each ``(B, latent_dim)``;
        decode: ``(B, latent_dim)`` -> logits ``(B, L, 20)``.
    """

    def __init__(self, seq_len: int = 28, latent_dim: int = 16, embedding: int = 64, width: int = 128) -> None:
        super().__init__()
        if seq_len % 4 or seq_len < 4:
            raise InvalidValueError(f"SequenceVAE needs a sequence length that is a multiple of 4, got {seq_len}")
        if width % 4 or width < 4:
            raise InvalidValueError(f"SequenceVAE's width must be a multiple of 4, got {width}")
        self.seq_len, self.latent_dim, self.embedding_dim, self.width = int(seq_len), int(latent_dim), int(embedding), int(width)
        w, q = self.width, self.seq_len // 4
        self.embedding = nn.Embedding(NUM_TOKENS, self.embedding_dim)
        self.encoder = nn.Sequential(
            nn.Conv1d(self.embedding_dim, w, 3, padding=1), nn.ReLU(),
            nn.Conv1d(w, w // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(w // 2, w // 4, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.to_mu = nn.Linear(w // 4 * q, self.latent_dim)
        self.to_logvar = nn.Linear(w // 4 * q, self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, w // 4 * q)
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(w // 4, w // 2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose1d(w // 2, w, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose1d(w, self.embedding_dim, 3, padding=1),
        )
        self.to_logits = nn.Linear(self.embedding_dim, NUM_TOKENS)
        self.metrics: dict[str, Any] = {}

    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        if tokens.ndim != 2 or tokens.shape[1] != self.seq_len or tokens.is_floating_point():
            raise InvalidValueError(f"SequenceVAE.encode takes (B, {self.seq_len}) integer tokens, got "
                                    f"{tuple(tokens.shape)} {tokens.dtype}")
        h = self.encoder(self.embedding(tokens).transpose(1, 2)).flatten(1)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InvalidValueError(f"SequenceVAE.decode takes (B, {self.latent_dim}) latents, got {tuple(z.shape)}")
        h = F.relu(self.from_latent(z)).view(z.shape[0], self.width // 4, self.seq_len // 4)
        return self.to_logits(self.decoder(h).transpose(1, 2))

    def forward(self, tokens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, mu, logvar)`` of a reparameterised draw."""
        mu, logvar = self.encode(tokens)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return self.decode(mu + noise * torch.exp(0.5 * logvar)), mu, logvar

    def config(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "latent_dim": self.latent_dim, "embedding": self.embedding_dim,
                "width": self.width}


# -- recipes and the cache ---------------------------------------------------------------------

#: The oracle's recipe: Adam with weight decay, MSE on standardised scores, 10 % held out.
ORACLE_RECIPE: dict[str, Any] = {"steps": 2500, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4,
                                 "holdout": 0.1, "seed": 0}
#: The guidance predictor's recipe (the task file is small: fewer steps).
PREDICTOR_RECIPE: dict[str, Any] = {"steps": 1000, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4, "seed": 0}
#: The VAE's recipe: cross-entropy summed over residues plus ``beta`` times the KL.
VAE_RECIPE: dict[str, Any] = {"steps": 4000, "batch_size": 128, "lr": 2e-3, "beta": 1.0, "latent_dim": 16,
                              "width": 128, "embedding": 64, "seed": 0}


def _file_hash(*names: str) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update((data_dir() / name).read_bytes())
    return h.hexdigest()[:16]


def _recipe(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise InvalidValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
    r = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
    for k in ("steps", "batch_size"):
        if to_int(r[k], k) < 1:
            raise InvalidValueError(f"{k} must be >= 1, got {r[k]!r}")
    return r


def _key(kind: str, recipe: dict[str, Any], data: str) -> str:
    return hashlib.sha256(json.dumps({"kind": kind, "recipe": recipe, "data": data, "v": 1},
                                     sort_keys=True).encode()).hexdigest()[:20]


def _cached(path: Path | None, key: str, build: Callable[[dict], nn.Module], train: Callable[[], nn.Module],
            what: str, retrain: bool) -> nn.Module:
    if path is not None and not retrain:
        payload = load_payload(path, key)
        if payload is not None:
            try:
                model = build(payload["config"])
                model.load_state_dict(payload["state_dict"])
                model.metrics = json.loads(payload["metrics"])
                return model.eval().requires_grad_(False)
            except Exception:  # a foreign payload under the right key: retrain and overwrite it
                pass
    model = train().eval().requires_grad_(False)
    if path is not None:
        save_payload({"key": key, "config": model.config(), "state_dict": model.state_dict(),
                      "metrics": json.dumps(model.metrics)}, path, what)
    return model


def _path(cache: bool, cache_dir: str | os.PathLike[str] | None, name: str) -> Path | None:
    return cache_dir_of(cache_dir) / name if cache else None


@torch.no_grad()
def predict(model: nn.Module, tokens: Tensor, batch_size: int = 2048) -> np.ndarray:
    """Raw scores ``(N,)`` (float64) of ``(N, L)`` tokens, in batches."""
    return np.concatenate([model(tokens[i:i + batch_size]).double().numpy()
                           for i in range(0, len(tokens), batch_size)]) if len(tokens) else np.zeros(0)


def _one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """One-cycle LR with a 10 % warm-up; 15 % where 10 % of ``steps`` is exactly one step (a warm-up
    that ends at step 0 makes OneCycleLR divide by zero, e.g. at 10 steps)."""
    pct = 0.15 if 0.1 * steps == 1.0 else 0.1
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct)


def _fit_cnn(tokens: Tensor, y: np.ndarray, r: dict[str, Any]) -> FitnessCNN:
    gen = torch.Generator().manual_seed(int(r["seed"]))
    torch.manual_seed(int(r["seed"]))  # the layers' initialisation
    y_t = torch.as_tensor(y, dtype=torch.float32)
    model = FitnessCNN(mean=float(y_t.mean()), std=float(y_t.std().clamp_min(1e-6)))
    z = (y_t - model.mean) / model.std
    opt = torch.optim.AdamW(model.parameters(), lr=float(r["lr"]), weight_decay=float(r["weight_decay"]))
    sched = _one_cycle(opt, float(r["lr"]), int(r["steps"]))
    n, b = len(tokens), min(int(r["batch_size"]), len(tokens))
    model.train()
    for _ in range(int(r["steps"])):
        idx = torch.randint(n, (b,), generator=gen)
        loss = F.mse_loss(model.standardised(tokens[idx]), z[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


def _holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed).permutation(n)
    k = int(round(n * float(fraction)))
    return perm[k:], perm[:k]


def train_oracle(*, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False,
                 **options: Any) -> FitnessCNN:
    """The evaluation oracle: a :class:`FitnessCNN` on the ground truth less a held-out part (cached).

    ``model.metrics`` holds ``heldout_spearman``, ``heldout_mae`` (raw score units) and the
    set sizes. Keyword options override :data:`ORACLE_RECIPE`.
    """
    r = _recipe(ORACLE_RECIPE, options)
    if not 0 < float(r["holdout"]) < 1:
        raise InvalidValueError(f"holdout must lie in (0, 1), got {r['holdout']!r}")
    key = _key("oracle", r, _file_hash("aav_ground_truth.csv"))

    def train() -> FitnessCNN:
        gt = load_ground_truth()
        tokens, y = gt.tokens(), gt.scores
        fit, held = _holdout(len(gt), float(r["holdout"]), int(r["seed"]))
        model = _fit_cnn(tokens[fit], y[fit], r).eval()
        pred = predict(model, tokens[held])
        model.metrics = {"heldout_spearman": spearman(pred, y[held]), "heldout_mae": float(np.abs(pred - y[held]).mean()),
                         "n_train": int(len(fit)), "n_heldout": int(len(held))}
        return model

    return _cached(_path(cache, cache_dir, f"aav-oracle-{key}.pt"), key, lambda c: FitnessCNN(**c), train,
                   "the AAV oracle", retrain)


def _outside(task: SequenceSet) -> SequenceSet:
    """The ground-truth sequences that are not in ``task`` (held out from the predictor and the VAE)."""
    gt = load_ground_truth()
    inside = set(task.sequences)
    keep = [i for i, s in enumerate(gt.sequences) if s not in inside]
    return SequenceSet(tuple(gt.sequences[i] for i in keep), gt.scores[keep], "ground_truth - " + task.name)


def outside_metrics(model: nn.Module, data: SequenceSet) -> dict[str, Any]:
    """A task predictor's scores on the ground-truth sequences outside the task file ``data``.

    Returns:
        dict: ``spearman_outside``, ``mae_outside`` (raw score units), ``spearman_top``
        (among those fitter than the file's best: the region designs aim at), ``n_train``
        (the file's distinct sequences) and ``n_outside``.
    """
    out = _outside(data)
    pred = predict(model, out.tokens())
    top = out.scores > data.scores.max()
    return {"spearman_outside": spearman(pred, out.scores), "mae_outside": float(np.abs(pred - out.scores).mean()),
            "spearman_top": spearman(pred[top], out.scores[top]) if top.sum() > 1 else float("nan"),
            "n_train": len(data), "n_outside": len(out)}


def train_predictor(task: str, *, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
                    retrain: bool = False, **options: Any) -> FitnessCNN:
    """The guidance predictor of a task: a :class:`FitnessCNN` on the task's file only (cached).

    ``model.metrics`` holds ``spearman_outside`` and ``mae_outside`` on the ground-truth
    sequences outside the task file, and ``spearman_top`` on those above the task's
    highest score (how well it ranks the region designs aim at). Keyword options
    override :data:`PREDICTOR_RECIPE`.
    """
    data = load_task(task)
    r = _recipe(PREDICTOR_RECIPE, options)
    key = _key("predictor", r, _file_hash(TASKS[task], "aav_ground_truth.csv"))

    def train() -> FitnessCNN:
        model = _fit_cnn(data.tokens(), data.scores, r).eval()
        model.metrics = outside_metrics(model, data)
        return model

    return _cached(_path(cache, cache_dir, f"aav-predictor-{task}-{key}.pt"), key, lambda c: FitnessCNN(**c), train,
                   f"the AAV {task} predictor", retrain)


@torch.no_grad()
def reconstruction(vae: SequenceVAE, tokens: Tensor, batch_size: int = 2048) -> dict[str, float]:
    """Exact (whole-sequence) and per-residue reconstruction of ``tokens`` through the encoder means."""
    if len(tokens) == 0:
        return {"exact": float("nan"), "per_residue": float("nan")}
    hits = torch.cat([vae.decode(vae.encode(tokens[i:i + batch_size])[0]).argmax(-1) == tokens[i:i + batch_size]
                      for i in range(0, len(tokens), batch_size)])
    return {"exact": float(hits.all(1).double().mean()), "per_residue": float(hits.double().mean())}


def fit_vae(data: SequenceSet, r: dict[str, Any], heldout: SequenceSet | None = None) -> SequenceVAE:
    """Trains a :class:`SequenceVAE` on ``data`` with the recipe ``r`` (:data:`VAE_RECIPE`'s keys).

    ``model.metrics``: ``train_exact``, ``train_per_residue``, the latent means' scale
    (``latent_std``, ``latent_absmax``) and, with ``heldout``, ``heldout_exact`` and
    ``heldout_per_residue`` on up to 2,000 of its sequences.
    """
    gen = torch.Generator().manual_seed(int(r["seed"]))
    torch.manual_seed(int(r["seed"]))
    tokens = data.tokens()
    model = SequenceVAE(tokens.shape[1], int(r["latent_dim"]), int(r["embedding"]), int(r["width"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(r["lr"]))
    sched = _one_cycle(opt, float(r["lr"]), int(r["steps"]))
    n, b = len(tokens), min(int(r["batch_size"]), len(tokens))
    model.train()
    for _ in range(int(r["steps"])):
        batch = tokens[torch.randint(n, (b,), generator=gen)]
        logits, mu, logvar = model(batch, generator=gen)
        rec = F.cross_entropy(logits.reshape(-1, NUM_TOKENS), batch.reshape(-1), reduction="sum") / b
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / b
        loss = rec + float(r["beta"]) * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
    model.eval()
    train_rec = reconstruction(model, tokens)
    with torch.no_grad():
        mu = model.encode(tokens)[0]
    model.metrics = {"train_exact": train_rec["exact"], "train_per_residue": train_rec["per_residue"],
                     "latent_std": float(mu.std(0).mean()), "latent_absmax": float(mu.abs().max()),
                     "n_train": len(data)}
    if heldout is not None and len(heldout):
        pick = torch.from_numpy(np.random.RandomState(0).permutation(len(heldout))[:2000])
        held_rec = reconstruction(model, heldout.tokens()[pick])
        model.metrics.update(heldout_exact=held_rec["exact"], heldout_per_residue=held_rec["per_residue"])
    return model


def train_vae(task: str | SequenceSet, *, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
              retrain: bool = False, **options: Any) -> SequenceVAE:
    """The sequence VAE of a task (or of the user's :class:`SequenceSet`), trained on its sequences (cached).

    Loss: cross-entropy summed over residues + ``beta`` KL(q(z|x) || N(0, I)) per sequence
    (:func:`fit_vae`). ``model.metrics`` holds ``train_exact``, ``train_per_residue``, the
    latent means' scale and, for a task, ``heldout_exact`` and ``heldout_per_residue``
    (2,000 ground-truth sequences outside the task file). A user's set is cached under a
    hash of its sequences. Keyword options override :data:`VAE_RECIPE`.
    """
    r = _recipe(VAE_RECIPE, options)
    if isinstance(task, SequenceSet):
        data, name = task, "user"
        digest = hashlib.sha256("\n".join(task.sequences).encode()).hexdigest()[:16]
    else:
        data, name = load_task(task), task
        digest = _file_hash(TASKS[task], "aav_ground_truth.csv")
    key = _key("vae", r, digest)

    def train() -> SequenceVAE:
        return fit_vae(data, r, _outside(data) if name != "user" else None)

    return _cached(_path(cache, cache_dir, f"aav-vae-{name}-{key}.pt"), key, lambda c: SequenceVAE(**c), train,
                   f"the {name} sequence VAE", retrain)
