"""Image data: the fixed split of scikit-learn's 8x8 digits and a local CIFAR-10 reader.

Nothing is ever downloaded:

- ``"digits"``: scikit-learn's :func:`~sklearn.datasets.load_digits`, the 1,797 real
  8x8 handwritten digits (UCI optdigits test set) that ship inside scikit-learn. Pixel
  values 0..16 are mapped linearly to ``[-1, 1]`` (``x / 8 - 1``); images have shape
  ``(1, 8, 8)``, float32. The split is fixed: for each class in turn, a
  ``torch.randperm`` drawn from ``torch.Generator().manual_seed(split_seed)`` orders
  the class's images and the first ``round(test_fraction * n_class)`` go to the test
  set (stratified by class). With the defaults ``split_seed=0, test_fraction=0.2``
  the split is **1,438 train / 359 test** images, the same on every machine.
- ``"cifar10"``: CIFAR-10 from a local copy the user provides: ``(3, 32, 32)`` uint8
  images and the official 50,000 / 10,000 train / test split. When torchvision is
  importable it reads the copy (``torchvision.datasets.CIFAR10(root, download=False)``,
  which also checks the files' MD5 sums); otherwise the official
  ``cifar-10-batches-py`` python batches (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``) are read directly. Those batches are pickles, so they are read by an
  unpickler that only builds the plain containers and NumPy arrays of the official
  format and refuses anything else. Get ``cifar-10-python.tar.gz`` from
  https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into ``root`` (so that
  ``root/cifar-10-batches-py/data_batch_1`` exists).

Example:
    >>> s = load_digits_split()
    >>> s.train_images.shape, s.test_images.shape, s.test_labels.dtype
    (torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]), torch.int64)
    >>> canonical_dataset("CIFAR-10")
    'cifar10'
"""

from __future__ import annotations

import functools
import io
import operator
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from energyflow.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "CIFAR10_DIRNAME",
    "DATASETS",
    "DigitsSplit",
    "canonical_dataset",
    "load_cifar10",
    "load_digits_split",
]

DATASETS = ("digits", "cifar10")
"""Names accepted by :class:`~energyflow.domains.image.ImageDomain`."""

CIFAR10_DIRNAME = "cifar-10-batches-py"
_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_FILES = ("test_batch",)
_ALIASES = {"mnist_like": "digits", "sklearn_digits": "digits", "cifar": "cifar10", "cifar_10": "cifar10"}


def canonical_dataset(name: str) -> str:
    """The canonical name of an image data set (case-insensitive, ``-`` counts as ``_``, aliases allowed).

    Raises:
        InvalidValueError: an unknown name; the message lists the choices.
    """
    if not isinstance(name, str):
        raise InvalidValueError(f"image data set name must be a string, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise InvalidValueError(f"unknown image data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def check_n(n: int) -> int:
    """``n`` as a non-negative ``int``; raises InvalidTypeError / InvalidValueError otherwise."""
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


