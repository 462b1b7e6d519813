"""Two-dimensional toy data sets and the toy domain (the paper's 8 Gaussians -> two moons).

Every data set is generated (nothing is downloaded) by a function
``fn(n, generator=None) -> Tensor`` returning float32 points of shape ``(n, 2)`` drawn
with the given ``torch.Generator`` (on the generator's device). The scales follow
the conventions of the FFJORD / TorchCFM toy benchmarks, chosen so that essentially
all mass lies in ``[-4, 4]^2``:

- ``eight_gaussians``: 8 equally weighted isotropic Gaussians with std
  ``1/(2 sqrt 2) ~ 0.354`` centred on a circle of radius ``2 sqrt 2 ~ 2.83`` at the
  angles ``k pi / 4``.
- ``moons``: two interleaved half circles of radius 1 (the ``make_moons`` geometry)
  with Gaussian noise of std 0.1, then centred and scaled by 2 (``x`` in about
  ``[-3, 3]``, ``y`` in about ``[-1.5, 1.5]``).
- ``checkerboard``: uniform on the 8 dark cells of a 4 x 4 board of 2 x 2 cells
  covering ``[-4, 4]^2`` (the bottom-left cell is dark).
- ``spirals``: two interleaved spirals, one the other rotated by pi; the radius grows
  linearly with the angle up to ``pi ~ 3.14``; Gaussian noise of std 0.1.
- ``rings``: 4 concentric circles of radii 0.75, 1.5, 2.25, 3.0, equally likely, with
  radial noise of std 0.08.
- ``gaussian``: the standard normal N(0, I_2), the usual source.

Example:
    >>> import torch
    >>> from energyflow.domains.toy import DATASETS, ToyDomain, sample_dataset
    >>> x = sample_dataset("moons", 500, torch.Generator().manual_seed(0))
    >>> x.shape, x.dtype, bool(x.abs().max() < 4)
    (torch.Size([500, 2]), torch.float32, True)
    >>> domain = ToyDomain(dataset="moons", source="eight_gaussians")
    >>> domain.default_network()(x).shape
    torch.Size([500, 1])
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from energyflow import metrics as _metrics
from energyflow.domains.base import Domain, mlp_potential, resolve_like, subset
from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.spaces import Euclidean

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DATASETS",
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "TEST_SEED",
    "ToyDomain",
    "checkerboard",
    "eight_gaussians",
    "eight_gaussians_centers",
    "gaussian",
    "get_dataset",
    "moons",
    "rings",
    "sample_dataset",
    "spirals",
]

EIGHT_GAUSSIANS_RADIUS = 2.0 * math.sqrt(2.0)
EIGHT_GAUSSIANS_STD = 0.5 / math.sqrt(2.0)
RINGS_RADII = (0.75, 1.5, 2.25, 3.0)


def _check_n(n: int) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise InvalidTypeError(f"n must be an integer number of samples, got {type(n).__name__}") from None
    if n < 0:
        raise InvalidValueError(f"n must be a non-negative number of samples, got {n}")
    return n


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=_device(generator), dtype=torch.float32)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=_device(generator), dtype=torch.float32)


def _randint(high: int, n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(high, (n,), generator=generator, device=_device(generator))


def eight_gaussians_centers() -> Tensor:
    """The 8 mode centres of :func:`eight_gaussians`, shape ``(8, 2)`` float32.

    Example:
        >>> c = eight_gaussians_centers()
        >>> c.shape, round(float(c.norm(dim=1).mean()), 4)    # radius 2 sqrt 2
        (torch.Size([8, 2]), 2.8284)
    """
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4.0)
    return (EIGHT_GAUSSIANS_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def eight_gaussians(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Mixture of 8 equally weighted Gaussians on a circle.

    Centres at radius ``2 sqrt 2`` and angles ``k pi / 4``; each component is isotropic
    with std ``1 / (2 sqrt 2)``.

    Args:
        n (int): number of points.
        generator (torch.Generator | None): source of randomness.

    Returns:
        Tensor: shape ``(n, 2)``, float32.

    Example:
        >>> eight_gaussians(3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    n = _check_n(n)
    centers = eight_gaussians_centers().to(_device(generator))
    k = _randint(8, n, generator)
    return centers[k] + EIGHT_GAUSSIANS_STD * _randn((n, 2), generator)


def moons(n: int, generator: torch.Generator | None = None, noise: float = 0.1) -> Tensor:
    """Two interleaved half circles ("two moons"), centred and scaled by 2.

    The upper moon is ``(cos t, sin t)`` and the lower ``(1 - cos t, 1/2 - sin t)`` for
    ``t ~ U(0, pi)``; Gaussian noise of std ``noise`` is added, then the points are
    shifted by ``-(1/2, 1/4)`` (centring the pair) and multiplied by 2. Each point
    belongs to either moon with probability 1/2.

    Args:
        n (int): number of points.
        generator (torch.Generator | None): source of randomness.
        noise (float): std of the Gaussian noise before scaling.

    Returns:
        Tensor: shape ``(n, 2)``, float32.

    Example:
        >>> moons(3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    n = _check_n(n)
    if noise < 0:
        raise InvalidValueError(f"noise must be >= 0, got {noise}")
    t = math.pi * _rand((n,), generator)
    lower = _randint(2, n, generator).bool()
    x = torch.where(lower, 1.0 - t.cos(), t.cos())
    y = torch.where(lower, 0.5 - t.sin(), t.sin())
    pts = torch.stack([x, y], dim=1) + noise * _randn((n, 2), generator)
    return 2.0 * (pts - torch.tensor([0.5, 0.25], device=pts.device))


def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform distribution on the dark cells of a 4 x 4 checkerboard over ``[-4, 4]^2``.

    Cells are 2 x 2; cell ``(col, row)`` is dark when ``col + row`` is even, so 8 of the
    16 cells carry mass, each with probability 1/8.

    Args:
        n (int): number of points.
        generator (torch.Generator | None): source of randomness.

    Returns:
        Tensor: shape ``(n, 2)``, float32.

    Example:
        >>> x = checkerboard(100, torch.Generator().manual_seed(0))
        >>> cells = ((x + 4) // 2).long()
        >>> bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())
        True
    """
    n = _check_n(n)
    cell = _randint(8, n, generator)
    row = cell // 2
    col = 2 * (cell % 2) + row % 2  # col + row even
    corner = torch.stack([col, row], dim=1).float() * 2.0 - 4.0
    return corner + 2.0 * _rand((n, 2), generator)


def spirals(n: int, generator: torch.Generator | None = None, noise: float = 0.1) -> Tensor:
    """Two interleaved spirals, the second the first rotated by pi.

    Along each arm the angle is ``theta = 3 pi sqrt(u)`` with ``u ~ U(0, 1)`` (so points
    spread roughly evenly along the arm) and the radius is ``theta / 3``; Gaussian noise
    of std ``noise`` is added.

    Args:
        n (int): number of points.
        generator (torch.Generator | None): source of randomness.
        noise (float): std of the Gaussian noise.

    Returns:
        Tensor: shape ``(n, 2)``, float32.

    Example:
        >>> spirals(3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    n = _check_n(n)
    if noise < 0:
        raise InvalidValueError(f"noise must be >= 0, got {noise}")
    theta = 3.0 * math.pi * _rand((n,), generator).sqrt()
    sign = 1.0 - 2.0 * _randint(2, n, generator).float()
    r = theta / 3.0
    pts = sign.unsqueeze(1) * torch.stack([r * theta.cos(), r * theta.sin()], dim=1)
    return pts + noise * _randn((n, 2), generator)


def rings(n: int, generator: torch.Generator | None = None, noise: float = 0.08) -> Tensor:
    """Four concentric circles of radii 0.75, 1.5, 2.25 and 3, equally likely.

    Angles are uniform; the radius gets Gaussian noise of std ``noise``.

    Args:
        n (int): number of points.
        generator (torch.Generator | None): source of randomness.
        noise (float): std of the radial noise.

    Returns:
        Tensor: shape ``(n, 2)``, float32.

    Example:
        >>> r = rings(1000, torch.Generator().manual_seed(0)).norm(dim=1)
        >>> bool((r > 0.4).all() and (r < 3.5).all())
        True
    """
    n = _check_n(n)
    if noise < 0:
        raise InvalidValueError(f"noise must be >= 0, got {noise}")
    radii = torch.tensor(RINGS_RADII, dtype=torch.float32, device=_device(generator))
    r = radii[_randint(len(RINGS_RADII), n, generator)] + noise * _randn((n,), generator)
    phi = 2.0 * math.pi * _rand((n,), generator)
    return torch.stack([r * phi.cos(), r * phi.sin()], dim=1)


def gaussian(n: int, generator: torch.Generator | None = None) -> Tensor:
    """The standard normal N(0, I_2).

    Args:
        n (int): number of points.
        generator (torch.Generator | None): source of randomness.

    Returns:
        Tensor: shape ``(n, 2)``, float32.

    Example:
        >>> gaussian(3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    return _randn((_check_n(n), 2), generator)


DATASETS: dict[str, Callable[..., Tensor]] = {
    "eight_gaussians": eight_gaussians,
    "moons": moons,
    "checkerboard": checkerboard,
    "spirals": spirals,
    "rings": rings,
    "gaussian": gaussian,
}
"""Toy data set name -> ``fn(n, generator=None) -> Tensor (n, 2)``."""

_ALIASES = {"8gaussians": "eight_gaussians", "two_moons": "moons", "2spirals": "spirals", "normal": "gaussian"}


def get_dataset(name: str) -> Callable[..., Tensor]:
    """Returns the generator function of the toy data set ``name``.

    Names are case-insensitive and ``-`` counts as ``_``; the aliases ``8gaussians``,
    ``two_moons``, ``2spirals`` and ``normal`` are accepted.

    Raises:
        ValueError: unknown name; the message lists the choices.

    Example:
        >>> get_dataset("two-moons").__name__
        'moons'
    """
    if not isinstance(name, str):
        raise InvalidValueError(f"toy data set name must be a string, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise InvalidValueError(f"unknown toy data set {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


def sample_dataset(
    name: str,
    n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draws ``n`` points of the toy data set ``name``, shape ``(n, 2)`` float32.

    Draws happen on the generator's device and are then moved to ``device``.

    Example:
        >>> sample_dataset("rings", 4, torch.Generator().manual_seed(1)).shape
        torch.Size([4, 2])
    """
    x = get_dataset(name)(n, generator)
    return x.to(device) if device is not None else x


TEST_SEED = 0x7E57_5EED
"""Seed of the toy domains' held-out draw; the trainer's data streams never use it."""


class ToyDomain(Domain):
    """The 2-D toy domain: transport ``source`` to ``dataset`` in R^2.

    The paper's demo is ``ToyDomain(dataset="moons", source="eight_gaussians")``.

    Toy data sets are generative distributions, not finite sets: :meth:`train_data`
    and :meth:`sample_data` are fresh draws, and the held-out :meth:`test_data` is one
    fixed draw of ``test_size`` points made with the seed :data:`TEST_SEED`, which no
    training stream uses, so it is independent of every training draw.

    Args:
        dataset (str): name of the data set (a key of :data:`DATASETS`).
        source (str): name of the distribution the flow starts from; ``"gaussian"``
            (the default) is the standard normal of the space.
        test_size (int): points in the held-out set (>= 2).

    Attributes:
        name (str): ``"toy"``.
        options (tuple[str, ...]): ``("dataset", "source", "test_size")``, the config's
            ``domain_options``.
        network_options (tuple[str, ...]): ``("hidden", "depth")``.
        space (Euclidean): ``Euclidean(2)``.
        dataset (str): canonical data set name.
        source (str): canonical source name.

    Example:
        >>> import torch
        >>> d = ToyDomain("checkerboard")
        >>> d.sample_data(8, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 2])
        >>> d.test_data().shape, torch.equal(d.test_data(5), d.test_data()[:5])
        (torch.Size([2000, 2]), True)
        >>> d.decode(torch.tensor([[0.5, -1.0]]))
        [(0.5, -1.0)]
    """

    name = "toy"
    options = ("dataset", "source", "test_size")
    network_options = ("hidden", "depth")

    def __init__(self, dataset: str = "moons", source: str = "gaussian", test_size: int = 2000) -> None:
        self.dataset = get_dataset(dataset).__name__
        self.source = get_dataset(source).__name__
        self.test_size = _check_n(test_size)
        if self.test_size < 2:
            raise InvalidValueError(f"test_size must be >= 2 (the metrics compare sets of points), got {test_size}")
        self.space = Euclidean(2)
        self._test: Tensor | None = None

    def sample_data(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draws ``n`` data points, shape ``(n, 2)`` float32."""
        return sample_dataset(self.dataset, n, generator, device)

    def train_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` fresh training draws, shape ``(n, 2)`` float32 (the same as :meth:`sample_data`).

        Raises:
            InvalidValueError: ``n`` is None: a toy data set is a distribution with no
                finite training set.
        """
        if n is None:
            raise InvalidValueError(f"the toy data set {self.dataset!r} is a distribution, not a finite set: "
                                    "ask train_data for n points")
        return self.sample_data(n, generator)

    def test_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The held-out draw, ``(test_size, 2)`` float32, or ``n`` of its points.

        Args:
            n (int | None): points wanted (at most ``test_size``); the first ``n``, or
                ``n`` distinct ones drawn with ``generator``.
            generator (torch.Generator | None): picks the points when given.
        """
        if self._test is None:
            self._test = sample_dataset(self.dataset, self.test_size, torch.Generator().manual_seed(TEST_SEED))
        return subset(self._test, n, generator, f"the held-out draw of {self.dataset}")

    def sample_source(
        self,
        n: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        like: Tensor | None = None,
    ) -> Tensor:
        """Draws source points (where the flow starts), shape ``(n, 2)``.

        Float32 on ``device`` (default: the generator's); with ``like`` (a data batch
        ``(B, 2)``), ``B`` points with ``like``'s device and dtype.
        """
        n, device, dtype = resolve_like(self.space, n, like, device)
        x = sample_dataset(self.source, n, generator, device)
        return x.to(dtype) if dtype is not None else x

    def decode(self, samples: Tensor) -> list[tuple[float, float]]:
        """The points of a batch ``(B, 2)`` as ``B`` tuples ``(x, y)`` of Python floats."""
        x = self._check(samples, "samples")
        return [(float(a), float(b)) for a, b in x.detach().cpu().double().tolist()]

    @staticmethod
    def _check(t: Any, label: str) -> Tensor:
        if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[1] != 2:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise InvalidValueError(f"{label} must be a tensor of shape (B, 2) for the toy domain, got {shape}")
        return t

    def default_network(self, hidden: int = 256, depth: int = 3) -> nn.Module:
        """A time-independent scalar potential MLP ``2 -> hidden (x depth) -> 1`` with SiLU.

        Args:
            hidden (int): width of the hidden layers.
            depth (int): number of hidden layers (>= 1).

        Returns:
            nn.Module: maps ``(B, 2)`` to ``(B, 1)``.
        """
        return mlp_potential(2, hidden, depth)

    def metrics(
        self, samples: Tensor, reference: Tensor | None = None, max_points: int = 2000
    ) -> dict[str, float]:
        """W2 (exact OT) and MMD^2 between generated samples and held-out data.

        To bound the cost of exact OT, only the first ``max_points`` of each set are used
        (samples are i.i.d., so the first ones are a fair subsample).

        Args:
            samples (Tensor): shape ``(B1, 2)``.
            reference (Tensor | None): shape ``(B2, 2)``; default the held-out draw,
                :meth:`test_data`.
            max_points (int): cap on the points used from each set.

        Returns:
            dict[str, float]: ``{"w2": ..., "mmd": ...}`` (both lower is better).
        """
        reference = self.test_data() if reference is None else reference
        self._check(samples, "samples")
        self._check(reference, "reference")
        x, y = samples[:max_points], reference[:max_points]
        return {"w2": _metrics.wasserstein2(x, y), "mmd": _metrics.mmd(x, y)}

    def plot(self, samples: Tensor, reference: Tensor | None = None, ax: Axes | None = None) -> Figure:
        """Scatter plot of ``samples`` (and ``reference``) in ``[-4, 4]^2``; returns the Figure.

        The title names the data set and the colours, e.g. ``"eight_gaussians: samples (orange)
        vs data (blue)"``; the legend calls ``reference`` "data".
        """
        from energyflow.plotting import DATA_COLOR, SAMPLE_COLOR, plot_samples

        title = f"{self.dataset}: samples"
        if reference is not None:
            title += f" ({SAMPLE_COLOR.removeprefix('tab:')}) vs data ({DATA_COLOR.removeprefix('tab:')})"
        return plot_samples(samples, reference=reference, ax=ax, title=title, reference_label="data")

    def __repr__(self) -> str:
        return f"ToyDomain(dataset={self.dataset!r}, source={self.source!r}, test_size={self.test_size})"
