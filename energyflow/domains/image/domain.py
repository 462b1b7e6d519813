"""The image domain: real 8x8 digits (offline, from scikit-learn) and local CIFAR-10.

Data sets and their fixed splits are described in :mod:`energyflow.domains.image.data`.
Images are float32 in ``[-1, 1]``: digits ``(1, 8, 8)`` (``x / 8 - 1`` of the 0..16 grey
levels), CIFAR-10 ``(3, 32, 32)`` (``x / 127.5 - 1`` of the uint8 pixels).

Metrics (digits): a small CNN digit classifier, trained once on the default train split
and cached (:mod:`energyflow.domains.image.classifier`), gives the Frechet distance of
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

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from energyflow import metrics as _metrics
from energyflow.domains.base import Domain, resolve_like, subset
from energyflow.domains.image.classifier import classifier_frechet_distance, predict_digits
from energyflow.domains.image.data import canonical_dataset as _canonical_dataset
from energyflow.domains.image.data import check_n as _check_n
from energyflow.domains.image.data import load_cifar10, load_digits_split
from energyflow.domains.image.networks import ConvPotential
from energyflow.errors import InvalidValueError
from energyflow.spaces import Euclidean

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ImageDomain"]


class ImageDomain(Domain):
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
        options (tuple[str, ...]): the constructor's arguments, the config's
            ``domain_options``.
        network_options (tuple[str, ...]): ``("hidden", "depth")`` of :meth:`default_network`.
        space (Euclidean): ``Euclidean((C, H, W))``.
        dataset (str): canonical data set name.
        num_classes (int): 10 for both data sets.

    Example:
        >>> d = ImageDomain("digits")
        >>> d.space.event_shape, d.test_labels().bincount().tolist()
        ((1, 8, 8), [36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
        >>> img = d.decode(d.test_data(1))[0]
        >>> img.shape, img.dtype, int(img.max())
        ((8, 8), dtype('uint8'), 255)
    """

    name = "image"
    options = ("dataset", "source", "split_seed", "test_fraction", "root", "dequantize")
    network_options = ("hidden", "depth")
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
        n: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        like: Tensor | None = None,
    ) -> Tensor:
        """Draws standard normal images (where the flow starts), ``(n, C, H, W)``.

        Float32, drawn on the generator's device and moved to ``device``; with ``like``
        (a batch of images), as many as it holds, on its device, in its dtype.
        """
        n, device, dtype = resolve_like(self.space, n, like, device)
        n = _check_n(n)
        gdev = generator.device if generator is not None else torch.device("cpu")
        x = self.space.noise(n, generator=generator, device=gdev, dtype=dtype or torch.float32)
        return x.to(device) if device is not None else x

    def train_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The training images, ``(N_train, C, H, W)`` float32 in ``[-1, 1]`` (a copy).

        With ``n``, ``n`` distinct ones: the first ``n``, or drawn with ``generator``.
        """
        return subset(self._to_float(self._train), n, generator, f"the {self.dataset} training split")

    def train_labels(self) -> Tensor:
        """Labels of :meth:`train_data`, ``(N_train,)`` int64."""
        return self._train_labels.clone()

    def test_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The held-out images, ``(N_test, C, H, W)`` float32 in ``[-1, 1]`` (a copy).

        With ``n``, ``n`` distinct ones: the first ``n``, or drawn with ``generator``.
        """
        return subset(self._to_float(self._test), n, generator, f"the {self.dataset} test split")

    def test_labels(self) -> Tensor:
        """Labels of :meth:`test_data`, ``(N_test,)`` int64."""
        return self._test_labels.clone()

    # -- network ---------------------------------------------------------------------

    def default_network(self, hidden: int = 64, depth: int = 2) -> nn.Module:
        """A fresh :class:`~energyflow.domains.image.networks.ConvPotential` for this domain's images.

        ``hidden=64, depth=2`` on digits gives 181,249 parameters. For the paper-scale
        CIFAR-10 potential use :func:`energyflow.domains.image.networks.cifar10_potential`.

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
        self, samples: Tensor, reference: Tensor | None = None, min_class_fraction: float = 0.02
    ) -> dict[str, float]:
        """Sample-quality metrics against the held-out images (or ``reference``).

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
            reference (Tensor | None): data, ``(B2, C, H, W)``, ``B2 >= 2``; default the
                whole test split (:meth:`test_data`, 359 digits).
            min_class_fraction (float): share a class needs to count as covered.

        Returns:
            dict[str, float]: metric name -> value.
        """
        x = self._check_batch(samples, "samples").clamp(-1.0, 1.0)
        y = self._check_batch(self.test_data() if reference is None else reference, "reference")
        if self.dataset != "digits":
            pool = nn.functional.avg_pool2d
            fx, fy = pool(x, 4).flatten(1), pool(y, 4).flatten(1)
            return {"pixel_fd": _metrics.frechet_distance_from_features(fx, fy)}
        hist = self.class_histogram(x)
        nonzero = hist[hist > 0]
        return {
            "fd": classifier_frechet_distance(x, y),
            "mode_coverage": float((hist >= min_class_fraction).double().mean()),
            "class_entropy": float(-(nonzero * nonzero.log()).sum()) + 0.0,  # + 0.0: no "-0.0"
        }

    # -- decoding and plotting -------------------------------------------------------

    def decode(self, samples: Tensor) -> list[np.ndarray]:
        """The images of a batch ``(B, C, H, W)`` as ``B`` uint8 arrays in ``[0, 255]``.

        Each is ``(H, W)`` for one channel, else ``(H, W, C)`` (the layout image
        libraries use); ``[-1, 1]`` maps linearly to ``[0, 255]`` (``round((x + 1) * 127.5)``),
        values outside are clipped.
        """
        x = self._check_batch(samples, "samples").clamp(-1.0, 1.0)
        pixels = ((x + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [img[..., 0].copy() if img.shape[-1] == 1 else img.copy() for img in pixels]

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
