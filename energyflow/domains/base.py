"""The Domain protocol: what training, sampling and evaluation need of a domain.

A domain bundles a data set (with a training and a held-out part), the
:class:`~energyflow.spaces.Space` its states live in, the distribution the flow starts
from, a default scalar potential network, the metrics people report for it, a way to
turn states back into domain objects (``decode``) and a quick plot. Domains use spaces,
metrics and plotting; they never reach into samplers or training.

Domains subclass :class:`Domain` (a :class:`typing.Protocol`, so ``isinstance`` checks
the members) and inherit its defaults:

- :meth:`Domain.sample_source`: standard noise of the space, shaped like a data batch
  when given one (``like=``);
- :meth:`Domain.metrics`: none; a domain overrides it, taking its own held-out
  reference (:meth:`Domain.test_data`) when the caller passes none;
- :meth:`Domain.save_samples`: ``torch.save`` of the states, written atomically;
- :meth:`Domain.plot`: raises :class:`PlotUnavailableError` (callers that plot when
  they can catch it);
- :attr:`Domain.options` / :attr:`Domain.network_options`: the config options the
  domain's constructor and :meth:`Domain.default_network` take (the trainer refuses
  any other with a ConfigError naming these).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from energyflow.spaces import Euclidean
    >>> class Line(Domain):
    ...     name, space, options = "line", Euclidean(1), ("shift",)
    ...     def __init__(self, shift: float = 3.0):
    ...         self.shift = shift
    ...     def sample_data(self, n, generator=None, device=None):
    ...         return self.shift + torch.randn(n, 1, generator=generator)
    ...     def train_data(self, n=None, generator=None):
    ...         return self.sample_data(n, generator)
    ...     def test_data(self, n=None, generator=None):
    ...         return self.sample_data(n or 100, torch.Generator().manual_seed(99))
    ...     def default_network(self):
    ...         return nn.Linear(1, 1)
    ...     def metrics(self, samples, reference=None):
    ...         reference = self.test_data() if reference is None else reference
    ...         return {"mean_error": float((samples.mean() - reference.mean()).abs())}
    ...     def decode(self, samples):
    ...         return [float(v) for v in samples[:, 0]]
    >>> d = Line()
    >>> isinstance(d, Domain), d.sample_source(4, torch.Generator().manual_seed(0)).shape
    (True, torch.Size([4, 1]))
    >>> batch = d.sample_data(3, torch.Generator().manual_seed(1)).double()
    >>> d.sample_source(like=batch).dtype, len(d.decode(batch))
    (torch.float64, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.spaces import Space

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Domain", "PlotUnavailableError", "mlp_potential", "resolve_like", "subset"]


class PlotUnavailableError(InvalidValueError):
    """The domain has no quick plot (:meth:`Domain.plot`); pass ``--no-plot`` or plot the samples yourself."""


def resolve_like(
    space: Space, n: int | None, like: Tensor | None, device: torch.device | str | None
) -> tuple[int, torch.device | str | None, torch.dtype | None]:
    """The ``(n, device, dtype)`` a source batch takes, given the ``n`` and ``like`` asked for.

    Without ``like``, ``n`` is required and ``dtype`` is None (the domain's own). With
    ``like`` (a data batch ``(B, *space.event_shape)``), ``n`` must be None or ``B``; the
    device is ``like``'s unless ``device`` is given, the dtype is ``like``'s.

    Raises:
        InvalidValueError: neither ``n`` nor ``like``, ``n != B``, or ``like`` does not
            have the space's event shape.

    Example:
        >>> from energyflow.spaces import Euclidean
        >>> resolve_like(Euclidean(2), None, torch.zeros(5, 2, dtype=torch.float64), None)
        (5, device(type='cpu'), torch.float64)
    """
    if like is None:
        if n is None:
            raise InvalidValueError("sample_source needs n (the number of states) or like (a data batch to copy)")
        return n, device, None
    event = tuple(space.event_shape)
    if not isinstance(like, Tensor) or tuple(like.shape[1:]) != event:
        got = tuple(like.shape) if isinstance(like, Tensor) else type(like).__name__
        raise InvalidValueError(f"like must be a data batch of shape (B, {', '.join(map(str, event))}), got {got}")
    if n is not None and n != like.shape[0]:
        raise InvalidValueError(f"sample_source got n={n} and a batch of {like.shape[0]} to copy; give one of them")
    return like.shape[0], like.device if device is None else device, like.dtype


def mlp_potential(in_features: int, hidden: int, depth: int) -> nn.Module:
    """A time-independent scalar potential MLP ``in_features -> hidden (x depth) -> 1`` with SiLU.

    Raises:
        InvalidValueError: ``hidden < 1`` or ``depth < 1``.

    Example:
        >>> mlp_potential(3, 8, 2)(torch.zeros(5, 3)).shape
        torch.Size([5, 1])
    """
    if hidden < 1 or depth < 1:
        raise InvalidValueError(f"need hidden >= 1 and depth >= 1, got hidden={hidden}, depth={depth}")
    layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.SiLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.SiLU()]
    layers.append(nn.Linear(hidden, 1))
    return nn.Sequential(*layers)


def subset(data: Any, n: int | None, generator: torch.Generator | None, what: str, unit: str = "points") -> Any:
    """All of ``data`` (``n`` None), its first ``n`` rows, or ``n`` distinct rows drawn with ``generator``.

    Args:
        data (Tensor | dict): ``(N, *event)``, or a dict state of batch-first leaves
            (graphs, molecules), indexed leaf by leaf.
        n (int | None): rows wanted, ``0 <= n <= N``.
        generator (torch.Generator | None): draws the rows (without replacement) when given.
        what (str): names the set in errors (``"the digits test split"``).
        unit (str): what a row is, for errors (``"graphs"``).

    Returns:
        Tensor | dict: ``(n, *event)`` (``(N, *event)`` for ``n`` None), a copy.

    Example:
        >>> subset(torch.arange(5), 2, None, "x").tolist()
        [0, 1]
        >>> subset({"a": torch.arange(5), "m": torch.ones(5, dtype=torch.bool)}, 2, None, "x")["a"].tolist()
        [0, 1]
    """
    total = tree.batch_size(data) if isinstance(data, dict) else data.shape[0]
    if n is None:
        return tree.clone(data) if isinstance(data, dict) else data.clone()
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= total:
        raise InvalidValueError(f"{what} holds {total} {unit}; asked for n={n!r}")
    if generator is None:
        idx: Tensor | slice = slice(0, n)
    else:
        idx = torch.randperm(total, generator=generator, device=generator.device)[:n]
    if isinstance(data, dict):
        return tree.clone(tree.index(data, idx))
    return data[idx].clone() if isinstance(idx, slice) else data[idx.to(data.device)]


@runtime_checkable
class Domain(Protocol):
    """A generative-modelling domain.

    Attributes:
        name (str): short identifier used in configs, run directories and logs.
        space (Space): the geometry of one state; ``space.event_shape`` is the shape of
            one sample without the batch dimension.
        options (tuple[str, ...]): the constructor's keyword options a config may set
            (``TrainConfig.domain_options``; the top-level ``dataset`` and ``source``
            fields are passed when listed here).
        network_options (tuple[str, ...]): the keyword options of
            :meth:`default_network` (``TrainConfig.network_options``; the top-level
            ``hidden`` and ``depth`` fields are passed when listed here).
    """

    name: str
    space: Space
    options: ClassVar[tuple[str, ...]] = ()
    network_options: ClassVar[tuple[str, ...]] = ()

    def sample_data(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draws ``n`` training samples, shape ``(n, *space.event_shape)``."""
        ...

    def train_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Training data, shape ``(n, *space.event_shape)``.

        A domain with a finite training set returns all of it for ``n=None``, else ``n``
        distinct points (the first ones, or drawn with ``generator``). A generative
        domain (a distribution one can sample without end, like the toy sets) needs
        ``n`` and returns fresh draws.
        """
        ...

    def test_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The held-out reference set, shape ``(n, *space.event_shape)``; never used for training.

        ``n=None`` gives all of it, else ``n`` of its points (the first ones, or ``n``
        distinct ones drawn with ``generator``). Generative domains hold out a draw
        with a fixed seed that training never uses.
        """
        ...

    def sample_source(
        self,
        n: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        like: Tensor | None = None,
    ) -> Tensor:
        """Draws the states the flow starts from, shape ``(n, *space.event_shape)``.

        The default is the standard noise of the domain's space (a standard Gaussian for
        :class:`~energyflow.spaces.Euclidean`), drawn on the generator's device and then
        moved to ``device``.

        Args:
            n (int | None): number of states; may be omitted when ``like`` is given.
            generator (torch.Generator | None): source of randomness.
            device (torch.device | str | None): where the result goes (default: ``like``'s
                device, else the generator's).
            like (Tensor | None): a data batch ``(B, *event)`` the source batch is paired
                with; the result copies its size, device and dtype, and, in domains
                whose states carry structure (the node masks of graphs), that structure.

        Raises:
            InvalidValueError: neither ``n`` nor ``like``, or ``n != B``.
        """
        if isinstance(like, dict):
            # A pytree state (a graph): noise on each coordinate leaf, the carried leaves
            # (node masks) copied, so the source has the structure of the data it is paired with.
            if n is not None and n != tree.batch_size(like):
                raise InvalidValueError(f"sample_source got n={n} and a batch of {tree.batch_size(like)} to copy; "
                                        "give one of them")
            x = self.space.noise(None, generator=generator, like=like)
            return tree.to(x, device) if device is not None else x
        n, device, dtype = resolve_like(self.space, n, like, device)
        gdev = generator.device if generator is not None else None
        x = self.space.noise(n, generator=generator, device=gdev, dtype=dtype)
        return x.to(device) if device is not None else x

    def default_network(self) -> nn.Module:
        """A fresh scalar potential network mapping ``(B, *event)`` to ``(B, 1)``.

        The network has no time input: Energy Matching learns one time-independent
        potential ``V_theta(x)``. Its keyword options are :attr:`network_options`.
        """
        ...

    def metrics(self, samples: Tensor, reference: Tensor | None = None) -> dict[str, float]:
        """Distances between generated ``samples`` and held-out data.

        Args:
            samples (Tensor): generated states, shape ``(B1, *event)``.
            reference (Tensor | None): data to compare with, shape ``(B2, *event)``;
                default: the domain's held-out set, :meth:`test_data`.

        Returns:
            dict[str, float]: metric name -> value (lower is better unless documented).
        """
        ...

    def decode(self, samples: Tensor) -> list[Any]:
        """Turns a batch of states ``(B, *event)`` into ``B`` domain objects (points, images, ...)."""
        ...

    def save_samples(self, samples: Any, path: str | os.PathLike[str]) -> str:
        """Writes generated ``samples`` (a batch of states) to ``path`` atomically; returns what was written.

        The default stores the states themselves with ``torch.save`` (a tensor, or a dict
        of tensors); domains whose users want domain objects override it (graphs: a list
        of PyG ``Data``).
        """
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(tree.to(tree.detach(samples), "cpu") if isinstance(samples, dict) else samples.detach().cpu(), tmp)
        os.replace(tmp, path)
        return f"{tree.batch_size(samples)} samples {tree.describe(tree.index(samples, slice(0, 0)))}"

    def plot(self, samples: Tensor, reference: Tensor | None = None, ax: Axes | None = None) -> Figure:
        """A quick figure of ``samples`` (and ``reference`` data); returns the Figure.

        Raises:
            PlotUnavailableError: the default; domains with a plot override it.
        """
        raise PlotUnavailableError(f"the {self.name} domain has no plot")
