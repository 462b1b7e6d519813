"""The image domain: real 8x8 digits (offline, from scikit-learn) and local CIFAR-10.

Data sets (nothing is ever downloaded):

- ``"digits"``: scikit-learn's :func:`~sklearn.datasets.load_digits`, the 1,797 real
  8x8 handwritten digits (UCI optdigits test set) that ship inside scikit-learn. Pixel
  values 0..16 are mapped linearly to ``[-1, 1]`` (``x / 8 - 1``); images have shape
  ``(1, 8, 8)``, float32. The split is fixed: for each class in turn, a
  ``torch.randperm`` drawn from ``torch.Generator().manual_seed(split_seed)`` orders
  the class's images and the first ``round(test_fraction * n_class)`` go to the test
  set (stratified by class). With the defaults ``split_seed=0, test_fraction=0.2``
  the split is **1,438 train / 359 test** images, the same on every machine.
- ``"cifar10"``: CIFAR-10 from a local copy the user provides: ``(3, 32, 32)`` images,
  uint8 mapped to ``[-1, 1]`` (``x / 127.5 - 1``), the official 50,000 / 10,000
  train / test split. When torchvision is importable it reads the copy
  (``torchvision.datasets.CIFAR10(root, download=False)``, which also checks the files'
  MD5 sums); otherwise the official ``cifar-10-batches-py`` python batches
  (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) are read directly. Those
  batches are pickles, so they are read by an unpickler that only builds the plain
  containers and NumPy arrays of the official format and refuses anything else. Get
  ``cifar-10-python.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html and
  unpack it into ``root`` (so that ``root/cifar-10-batches-py/data_batch_1`` exists).

Metrics (digits): a small CNN digit classifier, trained once on the default train split
and cached (:mod:`energyflow.domains.digit_classifier`), gives the Frechet distance of
its penultimate-layer features (``"fd"``), the fraction of the 10 classes that receive
at least ``min_class_fraction`` (2%) of the samples (``"mode_coverage"``) and the
entropy of the predicted class histogram in nats (``"class_entropy"``, at most
``ln 10 ~ 2.303``). Samples are clipped to ``[-1, 1]`` before classification, as is
usual for generated images.

Example:
    >>> import torch
    >>> domain = ImageDomain("digits")
    >>> x = domain.sample_data(16, torch.Generator().manual_seed(0))
    >>> x.shape, x.dtype, bool(x.min() >= -1 and x.max() <= 1)
    (torch.Size([16, 1, 8, 8]), torch.float32, True)
    >>> domain.train_data().shape[0], domain.test_data().shape[0]
    (1438, 359)
    >>> domain.default_network()(x).shape
    torch.Size([16, 1])
"""

from __future__ import annotations

import functools
import io
import operator
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from energyflow import metrics as _metrics
from energyflow.domains.image_nets import ConvPotential
from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.spaces import Euclidean

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "CIFAR10_DIRNAME",
    "DATASETS",
    "DigitsSplit",
    "ImageDomain",
    "load_cifar10",
    "load_digits_split",
]

DATASETS = ("digits", "cifar10")
"""Names accepted by :class:`ImageDomain`."""

CIFAR10_DIRNAME = "cifar-10-batches-py"
_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_FILES = ("test_batch",)
_ALIASES = {"mnist_like": "digits", "sklearn_digits": "digits", "cifar": "cifar10", "cifar_10": "cifar10"}


def _canonical_dataset(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidValueError(f"image data set name must be a string, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise InvalidValueError(f"unknown image data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def _check_n(n: int) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise InvalidTypeError(f"n must be an integer number of samples, got {type(n).__name__}") from None
    if n < 0:
        raise InvalidValueError(f"n must be a non-negative number of samples, got {n}")
    return n


# ----------------------------------------------------------------------------- digits


@dataclass(frozen=True)
class DigitsSplit:
    """A fixed train/test split of scikit-learn's digits.

    Attributes:
        train_images (Tensor): ``(N_train, 1, 8, 8)`` float32 in ``[-1, 1]``.
        train_labels (Tensor): ``(N_train,)`` int64 in ``0..9``.
        test_images (Tensor): ``(N_test, 1, 8, 8)`` float32 in ``[-1, 1]``.
        test_labels (Tensor): ``(N_test,)`` int64 in ``0..9``.
        train_index (Tensor): ``(N_train,)`` positions in ``load_digits()`` order.
        test_index (Tensor): ``(N_test,)`` positions in ``load_digits()`` order.
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    train_index: Tensor
    test_index: Tensor


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency of the image extra
        raise ImportError(
            "the digits data set ships with scikit-learn; install it with `pip install energyflow[image]` "
            "(or `pip install scikit-learn`)"
        ) from err
    bunch = load_digits()
    images = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32)).reshape(-1, 1, 8, 8)
    labels = torch.as_tensor(np.asarray(bunch.target, dtype=np.int64))
    return images / 8.0 - 1.0, labels


@functools.lru_cache(maxsize=8)
def load_digits_split(split_seed: int = 0, test_fraction: float = 0.2) -> DigitsSplit:
    """The fixed, class-stratified train/test split of scikit-learn's 8x8 digits.

    For each class ``c = 0..9`` in turn, ``torch.randperm(n_c)`` drawn from one
    ``torch.Generator().manual_seed(split_seed)`` orders the class's images (in
    ``load_digits()`` order); the first ``round(test_fraction * n_c)`` go to the test
    set. Both index lists are then sorted. Defaults give 1,438 train / 359 test images.

    Args:
        split_seed (int): seed of the split permutation.
        test_fraction (float): fraction of each class held out, in ``(0, 1)``.

    Returns:
        DigitsSplit: images in ``[-1, 1]`` and labels (shared, read-only by convention;
        clone before modifying).

    Example:
        >>> s = load_digits_split()
        >>> s.train_images.shape, s.test_images.shape
        (torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]))
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise InvalidValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = _digits_arrays()
    gen = torch.Generator().manual_seed(int(split_seed))
    train_parts, test_parts = [], []
    for c in range(10):
        members = torch.nonzero(labels == c).flatten()
        order = members[torch.randperm(members.numel(), generator=gen)]
        k = int(round(float(test_fraction) * members.numel()))
        test_parts.append(order[:k])
        train_parts.append(order[k:])
    train_index = torch.cat(train_parts).sort().values
    test_index = torch.cat(test_parts).sort().values
    return DigitsSplit(
        train_images=images[train_index], train_labels=labels[train_index],
        test_images=images[test_index], test_labels=labels[test_index],
        train_index=train_index, test_index=test_index,
    )


# ----------------------------------------------------------------------------- CIFAR-10


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what the official CIFAR-10 python batches contain."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a CIFAR-10 batch file: the official batches "
                "hold only dicts, lists, bytes and NumPy arrays"
            )
        if module == "numpy.core.multiarray":  # pickled by NumPy 1.x; NumPy 2 moved it
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        batch = _CifarUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise InvalidValueError(
            f"{path} is not a CIFAR-10 python batch (expected a dict, got {type(batch).__name__})"
        )
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise InvalidValueError(f"{path} is not a CIFAR-10 python batch (no 'data'/'labels' entries)")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise InvalidValueError(
            f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape}, {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_missing(root: Path, detail: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"CIFAR-10 not found under {root} ({detail}). energyflow never downloads data: get "
        "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into that "
        f"directory, so that {root / CIFAR10_DIRNAME / 'data_batch_1'} exists (or point root at a directory "
        "torchvision.datasets.CIFAR10 already uses)."
    )


def load_cifar10(root: str | os.PathLike[str], train: bool = True) -> tuple[Tensor, Tensor]:
    """Loads a local copy of CIFAR-10 as uint8 images and labels.

    Uses ``torchvision.datasets.CIFAR10(root, train, download=False)`` when torchvision
    is importable, else reads the official python batches in
    ``root/cifar-10-batches-py`` (or in ``root`` itself, if it holds them) with a
    restricted unpickler.

    Args:
        root (str | PathLike): directory holding ``cifar-10-batches-py``.
        train (bool): the 50,000 training images (else the 10,000 test images).

    Returns:
        tuple[Tensor, Tensor]: uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``.

    Raises:
        FileNotFoundError: the copy is missing or incomplete; the message says where to put it.
        ValueError: a file is not a CIFAR-10 batch.
    """
    root = Path(root).expanduser()
    try:
        import torchvision  # noqa: F401
    except ImportError:
        torchvision = None
    if torchvision is not None:
        try:
            ds = torchvision.datasets.CIFAR10(str(root), train=train, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted."
            raise _cifar_missing(root, str(err)) from err
        images = torch.as_tensor(np.ascontiguousarray(np.asarray(ds.data).transpose(0, 3, 1, 2)))
        return images, torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
    if not root.is_dir():
        raise _cifar_missing(root, "the directory does not exist")
    folder = root / CIFAR10_DIRNAME if (root / CIFAR10_DIRNAME).is_dir() else root
    names = _CIFAR10_TRAIN_FILES if train else _CIFAR10_TEST_FILES
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise _cifar_missing(root, f"missing {', '.join(missing)} in {folder}")
    parts = [_read_cifar_batch(folder / n) for n in names]
    images = torch.as_tensor(np.concatenate([p[0] for p in parts]))
    labels = torch.as_tensor(np.concatenate([p[1] for p in parts]))
    return images, labels


# ----------------------------------------------------------------------------- domain


class ImageDomain:
    """Images in ``[-1, 1]``: 8x8 digits (default, offline) or a local CIFAR-10.

    Args:
        dataset (str): ``"digits"`` or ``"cifar10"``.
        source (str): where the flow starts; only ``"gaussian"`` (standard normal
            images) is supported.
        split_seed (int): seed of the digits train/test split (see
            :func:`load_digits_split`). The metrics' classifier is trained on the
            default split (seed 0, fraction 0.2); other seeds make its features see
            some of this domain's test images.
        test_fraction (float): fraction of each digit class held out.
        root (str | PathLike | None): directory of the local CIFAR-10 copy (required
            for ``"cifar10"``; default: ``$ENERGYFLOW_DATA`` or ``~/.cache/energyflow/data``).
        dequantize (bool): add uniform noise of one grey level (digits: width 1/8, i.e.
            one of the 17 levels; CIFAR: 2/255) to every drawn image, then clip to
            ``[-1, 1]``. Off by default.

    Attributes:
        name (str): ``"image"``.
        default_preset (str): ``"mnist"``, the training preset a run of this domain starts from.
        space (Euclidean): ``Euclidean((C, H, W))``.
        dataset (str): canonical data set name.
        num_classes (int): 10 for both data sets.

    Example:
        >>> d = ImageDomain("digits")
        >>> d.space.event_shape, d.test_labels().bincount().tolist()
        ((1, 8, 8), [36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
    """

    name = "image"
    default_preset = "mnist"
    num_classes = 10

    def __init__(
        self,
        dataset: str = "digits",
        source: str = "gaussian",
        split_seed: int = 0,
        test_fraction: float = 0.2,
        root: str | os.PathLike[str] | None = None,
        dequantize: bool = False,
    ) -> None:
        self.dataset = _canonical_dataset(dataset)
        if not isinstance(source, str) or source.lower() not in ("gaussian", "normal"):
            raise InvalidValueError(
                f"ImageDomain supports only source='gaussian' (standard normal images), got {source!r}"
            )
        self.source = "gaussian"
        self.dequantize = bool(dequantize)
        self.split_seed, self.test_fraction = int(split_seed), float(test_fraction)
        if self.dataset == "digits":
            split = load_digits_split(self.split_seed, self.test_fraction)
            self._train, self._test = split.train_images, split.test_images
            self._train_labels, self._test_labels = split.train_labels, split.test_labels
            self._levels = 16.0  # x in [0, 16] mapped to [-1, 1]: one grey level = 2 / 16
            self.space = Euclidean((1, 8, 8))
        else:
            if root is None:
                root = os.environ.get("ENERGYFLOW_DATA") or Path.home() / ".cache" / "energyflow" / "data"
            self.root = Path(root).expanduser()
            self._train, self._train_labels = load_cifar10(self.root, train=True)  # uint8, kept compact
            self._test, self._test_labels = load_cifar10(self.root, train=False)
            self._levels = 255.0
            self.space = Euclidean((3, 32, 32))

    def _to_float(self, x: Tensor) -> Tensor:
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.clone()

    # -- data ------------------------------------------------------------------------

    def sample_data(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draws ``n`` training images uniformly with replacement, ``(n, C, H, W)`` float32.

        Indices (and the dequantisation noise, if on) are drawn on the generator's
        device, then the images are moved to ``device``.
        """
        n = _check_n(n)
        gdev = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(self._train.shape[0], (n,), generator=generator, device=gdev)
        x = self._to_float(self._train[idx.cpu()])
        if self.dequantize:
            noise = torch.rand(x.shape, generator=generator, device=gdev).cpu() - 0.5
            x = (x + (2.0 / self._levels) * noise).clamp(-1.0, 1.0)
        return x.to(device) if device is not None else x

    def sample_source(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draws ``n`` standard normal images (where the flow starts), ``(n, C, H, W)``."""
        n = _check_n(n)
        gdev = generator.device if generator is not None else torch.device("cpu")
        x = self.space.noise(n, generator=generator, device=gdev, dtype=torch.float32)
        return x.to(device) if device is not None else x

    def train_data(self) -> Tensor:
        """All training images, ``(N_train, C, H, W)`` float32 in ``[-1, 1]`` (a copy)."""
        return self._to_float(self._train)

    def train_labels(self) -> Tensor:
        """Labels of :meth:`train_data`, ``(N_train,)`` int64."""
        return self._train_labels.clone()

    def test_data(self) -> Tensor:
        """The held-out images, ``(N_test, C, H, W)`` float32 in ``[-1, 1]`` (a copy)."""
        return self._to_float(self._test)

    def test_labels(self) -> Tensor:
        """Labels of :meth:`test_data`, ``(N_test,)`` int64."""
        return self._test_labels.clone()

    # -- network ---------------------------------------------------------------------

    def default_network(self, hidden: int = 64, depth: int = 2) -> nn.Module:
        """A fresh :class:`~energyflow.domains.image_nets.ConvPotential` for this domain's images.

        ``hidden=64, depth=2`` on digits gives 181,249 parameters. For the paper-scale
        CIFAR-10 potential use :func:`energyflow.domains.image_nets.cifar10_potential`.

        Args:
            hidden (int): base channel width.
            depth (int): stride-2 downsampling stages (8x8 digits allow at most 3).

        Returns:
            nn.Module: maps ``(B, C, H, W)`` to ``(B, 1)``.
        """
        c, h, _ = self.space.event_shape
        return ConvPotential(in_channels=c, image_size=h, hidden=hidden, depth=depth)

    # -- metrics ---------------------------------------------------------------------

    def _check_batch(self, x: Tensor, label: str) -> Tensor:
        shape = tuple(self.space.event_shape)
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != shape or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidValueError(
                f"{label} must have shape (B, {', '.join(map(str, shape))}) for {self.dataset}, got {got}"
            )
        return x.detach().to("cpu", torch.float32)

    def class_histogram(self, samples: Tensor) -> Tensor:
        """Fraction of ``samples`` the digit classifier assigns to each class, ``(10,)`` float64.

        Samples are clipped to ``[-1, 1]`` first. Digits only.
        """
        self._require_digits("class_histogram")
        from energyflow.domains.digit_classifier import predict_digits

        x = self._check_batch(samples, "samples")
        if x.shape[0] == 0:
            raise InvalidValueError("class_histogram needs at least one sample")
        pred = predict_digits(x.clamp(-1.0, 1.0))
        return torch.bincount(pred, minlength=10).double() / pred.numel()

    def _require_digits(self, what: str) -> None:
        if self.dataset != "digits":
            raise InvalidValueError(
                f"{what} uses the cached digit classifier and is only defined for dataset='digits'"
            )

    def metrics(
        self, samples: Tensor, reference: Tensor, min_class_fraction: float = 0.02
    ) -> dict[str, float]:
        """Sample-quality metrics against ``reference`` images.

        Digits: ``"fd"`` Frechet distance of the digit classifier's penultimate
        features (lower is better; measured about 5 for 359 training digits against
        the 359 held-out ones and about 240 for 359 Gaussian-noise images; the estimate
        is biased upward for small sets, so compare equal sizes), ``"mode_coverage"``
        the fraction of the 10 classes that receive at least ``min_class_fraction`` of
        the samples (higher is better, 1.0 at best), ``"class_entropy"`` the entropy in
        nats of the predicted class histogram (``ln 10 ~ 2.303`` for balanced classes).
        Samples are clipped to ``[-1, 1]``.

        CIFAR-10 (no offline feature network exists): ``"pixel_fd"``, the Frechet
        distance of 4x4-average-pooled pixels (192 features). A crude proxy, not FID.

        Args:
            samples (Tensor): generated images, ``(B1, C, H, W)``, ``B1 >= 2``.
            reference (Tensor): data, ``(B2, C, H, W)``, ``B2 >= 2``.
            min_class_fraction (float): share a class needs to count as covered.

        Returns:
            dict[str, float]: metric name -> value.
        """
        x = self._check_batch(samples, "samples").clamp(-1.0, 1.0)
        y = self._check_batch(reference, "reference")
        if self.dataset != "digits":
            pool = nn.functional.avg_pool2d
            fx, fy = pool(x, 4).flatten(1), pool(y, 4).flatten(1)
            return {"pixel_fd": _metrics.frechet_distance_from_features(fx, fy)}
        from energyflow.domains.digit_classifier import classifier_frechet_distance

        hist = self.class_histogram(x)
        nonzero = hist[hist > 0]
        return {
            "fd": classifier_frechet_distance(x, y),
            "mode_coverage": float((hist >= min_class_fraction).double().mean()),
            "class_entropy": float(-(nonzero * nonzero.log()).sum()) + 0.0,  # + 0.0: no "-0.0"
        }

    # -- plotting --------------------------------------------------------------------

    def plot(self, samples: Tensor, reference: Tensor | None = None, ax: Any = None, nrow: int = 8,
             max_images: int = 64) -> Figure:
        """A grid of (at most ``max_images``) samples; with ``reference``, a second grid below.

        Args:
            samples (Tensor): ``(B, C, H, W)`` images in ``[-1, 1]`` (clipped).
            reference (Tensor | None): data to show under the samples.
            ax: unused (image grids make their own figure); accepted for the protocol.
            nrow (int): images per row.
            max_images (int): cap on the images shown from each set.

        Returns:
            Figure: the grid.
        """
        from energyflow import plotting

        x = self._check_batch(samples, "samples")[:max_images]
        if reference is None:
            return plotting.plot_image_grid(x, nrow=nrow, title="samples")
        y = self._check_batch(reference, "reference")[:max_images]
        nrow = min(nrow, max(x.shape[0], y.shape[0]))
        pad_x = (-x.shape[0]) % nrow
        blank = -torch.ones(pad_x, *x.shape[1:])
        separator = torch.ones(nrow, *x.shape[1:])  # a white row between the two grids
        grid = torch.cat([x, blank, separator, y])
        return plotting.plot_image_grid(grid, nrow=nrow, title="samples (top) / data (bottom)")
