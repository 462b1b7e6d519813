"""Conditional sampling on graphs with the energy DSL: completion, property steering, repulsion.

Everything here is an energy term added to the learned potential ``V`` and sampled with
the Energy Matching sampler (:class:`~energyflow.samplers.langevin.Langevin` with the
schedule eps(t), or :class:`~energyflow.samplers.guided.GuidedLangevin`), exactly as
:mod:`energyflow.inverse` poses inverse problems on images; no sampler is written here.

* **Completion** (:func:`complete`): a known part of each adjacency (edges *and*
  non-edges, a symmetric ``(B, N, N)`` bool mask) is observed with
  :func:`~energyflow.energies.observe.observe`, a Gaussian likelihood on the signed
  encoding, ``s_ij ~ Normal(y_ij, noise)`` for every known real pair ``i < j``, where
  ``s_ij = (a_ij + a_ji) / 2`` and ``y_ij = +1`` (edge) or ``-1`` (non-edge); the rest is
  sampled from ``exp(-V / eps) p(y | a)`` and decoded by the domain's threshold (an edge
  where ``s_ij > 0``). :func:`completion_accuracy` scores the hidden pairs against the
  held-out truth and against predicting every hidden pair by the majority class of the
  training edge density.
* **Steering** (:func:`steer`): :class:`GraphStatistic` is the Gaussian penalty
  ``(stat(A) - target)^2 / (2 scale^2)`` on a differentiable statistic of the relaxed
  adjacency ``A = ((a + a^T) / 2 + 1) / 2`` on real pairs (the ``{0, 1}`` scale; no clamp,
  so its gradient never vanishes): :func:`edge_count`, :func:`triangle_count`
  (``trace(A^3) / 6``), :func:`max_degree` (a log-sum-exp smooth maximum), or any
  ``state -> (B,)`` function, resolved by name through :data:`STATISTICS`.
* **Repulsion** (:func:`graph_repulsion`, :func:`diverse`): the quadratic
  :class:`~energyflow.energies.interaction.Repulsion` on the adjacency leaf, or on the
  sorted degree sequence (:func:`degree_profile`, invariant to node order, which the
  adjacency is not), and :func:`diversity` (unique fraction up to isomorphism, mean
  pairwise L1 distance of the sorted degree sequences, mean pairwise 1-Wasserstein
  distance of the normalised Laplacian spectra).

How the temperature couples. Observations, statistics and repulsion are ``"tempered"``
terms (negative log-densities): the plain sampler multiplies them by eps(t), and the
graph preset has ``tau_star = 1``, so they would be inert during the whole transport and
act only in the short Langevin phase at eps_max. With ``guidance=True`` (the default, as
in :func:`energyflow.inverse.solve`) the observation or statistic is handed to
:class:`~energyflow.samplers.guided.GuidedLangevin` instead: it acts from ``t = 0`` on
the endpoint ``a - (1 - t) grad V`` the transport is heading to, with weight
``w = eps(t_end)`` (eps_max), which keeps the target at eps_max the posterior
``exp(-V / eps_max) p(y | a)``. The likelihood's stiffness on a known pair is
``w / (2 noise^2)`` per unit of ``s``; Euler steps stay stable while
``step_size * w / noise^2 < 2`` (the default ``noise = 0.05`` with eps_max 0.05 and
step 0.01 gives 0.2).

The terms see a dict state; the library's tensor terms (``observe``'s
:class:`~energyflow.energies.observe.Observation`, ``Repulsion``) index ``x.shape[0]``
and so are applied to the ``"adj"`` leaf (or a feature map of the state) through
:class:`LeafEnergy`.

Example:
    >>> import torch, networkx as nx
    >>> graphs = [nx.cycle_graph(6), nx.path_graph(6)] * 4
    >>> d = GraphDomain.from_graphs(graphs, seed=0)
    >>> V = EdgeDensityPotential.from_domain(d)
    >>> truth = d.test_data()
    >>> known = random_known_mask(truth, 0.3, torch.Generator().manual_seed(0))
    >>> out = complete(V, d, truth, known, sampler=default_sampler(method="euler"),
    ...                generator=torch.Generator().manual_seed(1))
    >>> scores = completion_accuracy(out, truth)
    >>> scores.known_kept, scores.hidden_accuracy == scores.baseline_accuracy
    (1.0, True)
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import attrs
import networkx as nx
import numpy as np
import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.domains.graph.convert import dense_to_graphs
from energyflow.domains.graph.domain import GraphDomain, encode
from energyflow.energies.base import Energy
from energyflow.energies.interaction import Repulsion
from energyflow.energies.observe import observe
from energyflow.energies.potential import Potential
from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.field import compile as compile_field
from energyflow.samplers.base import SampleResult
from energyflow.samplers.guided import GuidedLangevin
from energyflow.samplers.langevin import Langevin
from energyflow.schedule import EnergyMatchingSchedule

__all__ = [
    "REPULSION_FEATURES", "STATISTICS", "CompletionResult", "CompletionScores", "DiversityResult", "DiversityScores",
    "EdgeDensityPotential", "GraphStatistic", "LeafEnergy", "SteeringResult", "adjacency_observation",
    "complete", "completion_accuracy", "default_sampler", "degree_profile", "diverse", "diversity", "edge_count",
    "edge_density", "graph_repulsion", "max_degree", "measure", "random_known_mask", "relaxed_adjacency",
    "steer", "triangle_count",
]

#: Default likelihood scale of an observed pair on the signed encoding (see the module).
DEFAULT_NOISE = 0.05
#: Default temperature of the smooth maximum in :func:`max_degree`.
DEFAULT_MAX_DEGREE_TEMPERATURE = 0.25


# -- states and masks --------------------------------------------------------------------


def _check_state(state: Any, what: str = "state") -> dict[str, Tensor]:
    if not isinstance(state, dict) or "adj" not in state or "mask" not in state:
        raise InvalidValueError(f"{what} must be a graph state {{'adj': (B, N, N), 'mask': (B, N)}}, "
                                f"got {tree.describe(state)}")
    adj, mask = state["adj"], state["mask"]
    if not isinstance(adj, Tensor) or adj.dim() != 3 or adj.shape[1] != adj.shape[2]:
        raise InvalidValueError(f"{what}['adj'] must be a (B, N, N) tensor, got {tree.describe(adj)}")
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(adj.shape[:2]):
        raise InvalidValueError(f"{what}['mask'] must be (B, N) = {tuple(adj.shape[:2])}, got {tree.describe(mask)}")
    return state


def _pairs(mask: Tensor, dtype: torch.dtype = torch.bool) -> Tensor:
    """``(B, N, N)``: real pairs ``i != j`` of the node mask ``(B, N)``."""
    m = mask.bool()
    n = m.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=m.device)
    out = m.unsqueeze(1) & m.unsqueeze(2) & off
    return out if dtype == torch.bool else out.to(dtype)


def _upper(x: Tensor) -> Tensor:
    """``x`` (B, N, N) restricted to ``i < j``."""
    return torch.triu(x, diagonal=1)


def relaxed_adjacency(state: dict[str, Tensor]) -> Tensor:
    """The relaxation on the ``{0, 1}`` scale: ``((a + a^T) / 2 + 1) / 2`` on real pairs, 0 elsewhere.

    Not clamped: a noisy state maps outside ``[0, 1]``, and the statistics stay smooth there.

    Args:
        state (dict): ``{"adj": (B, N, N) signed, "mask": (B, N) bool}``.

    Returns:
        Tensor: ``(B, N, N)``, symmetric, zero diagonal and padding.

    Example:
        >>> s = encode([nx.path_graph(3)], max_nodes=4)
        >>> relaxed_adjacency(s)[0].tolist()
        [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    s = _check_state(state)
    a = s["adj"]
    return 0.5 * (0.5 * (a + a.transpose(1, 2)) + 1.0) * _pairs(s["mask"], a.dtype)


def edge_density(domain: GraphDomain) -> float:
    """The training graphs' edge density: edges over real node pairs, pooled over the training split.

    Example:
        >>> d = GraphDomain.from_graphs([nx.path_graph(5)] * 5, seed=0)   # 4 edges on 10 pairs
        >>> round(edge_density(d), 3)
        0.4
    """
    edges = sum(g.number_of_edges() for g in domain.train_graphs)
    pairs = sum(g.number_of_nodes() * (g.number_of_nodes() - 1) // 2 for g in domain.train_graphs)
    if pairs == 0:
        raise InvalidValueError("the training graphs have no node pairs; the edge density is undefined")
    return edges / pairs


def random_known_mask(state: dict[str, Tensor], fraction: float,
                      generator: torch.Generator | None = None) -> Tensor:
    """Hides ``round(fraction * P_b)`` of each graph's ``P_b`` real pairs, uniformly and symmetrically.

    Args:
        state (dict): graph state ``{"adj": (B, N, N), "mask": (B, N)}`` (only the mask is read).
        fraction (float): share of each graph's real pairs to hide, in ``[0, 1]``.
        generator (torch.Generator | None): the draw (a fixed seed if None).

    Returns:
        Tensor: ``(B, N, N)`` bool, True on the known (observed) real pairs, symmetric;
        False on hidden pairs, the diagonal and padding.

    Example:
        >>> s = encode([nx.path_graph(5)])          # 10 pairs
        >>> known = random_known_mask(s, 0.3, torch.Generator().manual_seed(0))
        >>> int(known.sum()) // 2, bool((known == known.transpose(1, 2)).all())
        (7, True)
    """
    s = _check_state(state)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= float(fraction) <= 1.0:
        raise InvalidValueError(f"fraction (the share of pairs to hide) must lie in [0, 1], got {fraction!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    mask = s["mask"].bool().cpu()
    b, n = mask.shape
    iu = torch.triu_indices(n, n, offset=1)
    real = mask[:, iu[0]] & mask[:, iu[1]]  # (B, P)
    keys = torch.rand(real.shape, generator=gen, device=gen.device).cpu().masked_fill(~real, 2.0)
    positions = torch.arange(real.shape[1]).repeat(b, 1)
    ranks = torch.empty_like(positions).scatter_(1, keys.argsort(1), positions)  # rank of each pair's key
    hide = torch.round(float(fraction) * real.sum(1).double()).long()
    known_upper = real & ~(ranks < hide[:, None])
    known = torch.zeros(b, n, n, dtype=torch.bool)
    known[:, iu[0], iu[1]] = known_upper
    return (known | known.transpose(1, 2)).to(s["mask"].device)


def _check_known(known: Any, state: dict[str, Tensor]) -> Tensor:
    """The known mask, validated against ``state`` and restricted to real pairs."""
    shape = tuple(state["adj"].shape)
    if not isinstance(known, Tensor):
        raise InvalidTypeError(f"known must be a (B, N, N) bool tensor, got {type(known).__name__}")
    if known.dtype != torch.bool:
        raise InvalidTypeError(f"known must be a bool tensor (True where a pair is observed), got {known.dtype}")
    if tuple(known.shape) != shape:
        raise InvalidValueError(f"known must have the adjacency's shape {shape}, got {tuple(known.shape)}")
    if not bool((known == known.transpose(1, 2)).all()):
        bad = (known != known.transpose(1, 2)).nonzero()[0].tolist()
        raise InvalidValueError(f"known must be symmetric (a pair is observed as i-j and j-i); "
                                f"known[{bad[0]}, {bad[1]}, {bad[2]}] differs from its transpose")
    return known.to(state["mask"].device) & _pairs(state["mask"])


def _as_state(domain: GraphDomain, graphs_or_state: Any, what: str) -> dict[str, Tensor]:
    if isinstance(graphs_or_state, (list, tuple)):
        if not graphs_or_state or not all(isinstance(g, nx.Graph) for g in graphs_or_state):
            raise InvalidValueError(f"{what} must be a non-empty list of networkx graphs or a graph state")
        too_big = max(g.number_of_nodes() for g in graphs_or_state)
        if too_big > domain.max_nodes:
            raise InvalidValueError(f"{what}: a graph has {too_big} nodes, more than the domain's max_nodes="
                                    f"{domain.max_nodes}")
        return encode(list(graphs_or_state), domain.max_nodes)
    s = _check_state(graphs_or_state, what)
    if s["adj"].shape[-1] != domain.max_nodes:
        raise InvalidValueError(f"{what} is padded to N={s['adj'].shape[-1]} nodes; the domain's potential and "
                                f"space take N = max_nodes = {domain.max_nodes}")
    return {"adj": s["adj"].detach().float(), "mask": s["mask"].bool()}


def _signed(state: dict[str, Tensor]) -> Tensor:
    """The decoded signed adjacency: +1 where ``(a_ij + a_ji) / 2 > 0``, else -1, on real pairs; 0 elsewhere."""
    a = state["adj"]
    edge = 0.5 * (a + a.transpose(1, 2)) > 0
    pair = _pairs(state["mask"])
    return torch.where(pair, torch.where(edge, 1.0, -1.0), 0.0).to(a.dtype)


def _device_of(potential: nn.Module) -> torch.device:
    return next(iter(potential.parameters()), torch.zeros(())).device


def _as_energy(potential: Any) -> Energy:
    if isinstance(potential, Energy):
        return potential
    if isinstance(potential, nn.Module):
        return Potential(potential)
    raise InvalidTypeError(f"potential must be an Energy or an nn.Module, got {type(potential).__name__}")


# -- energy terms -------------------------------------------------------------------------


class LeafEnergy(Energy):
    """A tensor energy term applied to one leaf of a dict state (the adjacency by default) or to its features.

    The term's coupling (``"energy"`` or ``"tempered"``) and ``couples_batch`` are kept.

    Args:
        term (Energy): maps ``(B, *leaf_event)`` to ``(B,)``.
        key (str | Callable): the leaf, ``"adj"``; or a differentiable feature map
            ``state -> (B, *features)`` the term is applied to (e.g. :func:`degree_profile`).

    Shapes:
        x: ``{"adj": (B, N, N), ...}`` -> ``(B,)``

    Example:
        >>> rep = LeafEnergy(Repulsion(sigma=1.0))
        >>> rep({"adj": torch.eye(2).reshape(2, 1, 2), "mask": torch.ones(2, 1).bool()})
        tensor([-1., -1.])
    """

    def __init__(self, term: Energy, key: str = "adj") -> None:
        super().__init__()
        if not isinstance(term, Energy):
            raise InvalidTypeError(f"LeafEnergy wraps an Energy term, got {type(term).__name__}")
        if not (isinstance(key, str) or callable(key)):
            raise InvalidTypeError(f"key must be a leaf name or a feature map state -> tensor, got {key!r}")
        self.term, self.key = term, key
        self.coupling = term.coupling
        self.couples_batch = term.couples_batch

    @property
    def name(self) -> str:
        key = self.key if isinstance(self.key, str) else getattr(self.key, "__name__", "features")
        return getattr(self, "_label", None) or f"{self.term.name}[{key!r}]"

    def forward(self, x: Any) -> Tensor:
        if callable(self.key):
            return self.term(self.key(_check_state(x)))
        if not isinstance(x, dict) or self.key not in x:
            raise InvalidValueError(f"{self.name} takes a dict state with a {self.key!r} leaf, got {tree.describe(x)}")
        return self.term(x[self.key])


def adjacency_observation(state: dict[str, Tensor], known: Tensor, noise: float = DEFAULT_NOISE) -> LeafEnergy:
    """``-log p(y | a)`` of the known pairs, built with :func:`~energyflow.energies.observe.observe`.

    A Pyro model observes ``y_ij ~ Normal(s_ij, noise)`` on every known real pair ``i < j``
    (each pair once), ``s = (a + a^T) / 2``, ``y_ij`` the decoded value of ``state`` (+1
    edge, -1 non-edge). Its gradient in ``a`` is symmetric and zero off the known pairs.

    Args:
        state (dict): ``{"adj": (B, N, N), "mask": (B, N)}``: the graphs whose known pairs are observed.
        known (Tensor): ``(B, N, N)`` bool, symmetric; entries off the real pairs are ignored.
        noise (float): the likelihood's standard deviation on the signed scale (> 0).

    Returns:
        LeafEnergy: a tempered term of the batch ``B`` (one observation per sample).

    Raises:
        InvalidValueError: ``noise <= 0``, or ``known`` of the wrong shape or not symmetric.
        InvalidTypeError: ``known`` is not a bool tensor.

    Example:
        >>> s = encode([nx.path_graph(3)])
        >>> known = torch.ones(1, 3, 3, dtype=torch.bool)
        >>> obs = adjacency_observation(s, known, noise=1.0)
        >>> a = torch.zeros(1, 3, 3, requires_grad=True)
        >>> e = obs({"adj": a, "mask": s["mask"]}); e.backward()
        >>> round(float(e.detach()) - 3 * 0.5 * math.log(2 * math.pi), 4)   # three pairs, (0 - 1)^2 / 2 each
        1.5
        >>> bool((a.grad == a.grad.transpose(1, 2)).all())
        True
    """
    import pyro
    import pyro.distributions as dist

    s = _check_state(state)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 < float(noise) < math.inf:
        raise InvalidValueError(f"noise (the likelihood's scale) must be a finite number > 0, got {noise!r}")
    known = _check_known(known, s)
    observed = _upper(known.to(s["adj"].dtype)).bool()
    y = _signed(s) * observed
    sigma = float(noise)

    def graph_completion(adj: Tensor) -> None:
        sym = 0.5 * (adj + adj.transpose(1, 2))
        d = dist.Normal(sym, sigma).mask(observed.to(adj.device)).to_event(2)
        pyro.sample("adj", d, obs=y.to(device=adj.device, dtype=adj.dtype))

    return LeafEnergy(observe(graph_completion, name="observe(known pairs)"))


class EdgeDensityPotential(Energy):
    """A reference potential that knows only the edge density: independent Gaussian pairs.

    ``V(a) = sum_{i < j real} (s_ij - mu)^2 / (2 scale^2)`` with ``s = (a + a^T) / 2`` and
    ``mu = 2 density - 1`` (the signed mean). Under it a hidden pair decodes to the
    majority class of the density, so completing with it reproduces the edge-frequency
    baseline of :func:`completion_accuracy`; for tests, doctests and as a negative control.

    Args:
        density (float): edge density in ``[0, 1]``.
        scale (float): the pairs' standard deviation at eps = 1 (> 0).

    Example:
        >>> V = EdgeDensityPotential(0.25, scale=1.0)
        >>> V(encode([nx.path_graph(3)]))          # pairs +1, +1, -1 around mu = -0.5
        tensor([2.3750])
    """

    coupling = "energy"

    def __init__(self, density: float, scale: float = 0.25) -> None:
        super().__init__()
        if not 0.0 <= float(density) <= 1.0:
            raise InvalidValueError(f"density must lie in [0, 1], got {density!r}")
        if not 0 < float(scale) < math.inf:
            raise InvalidValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.density, self.scale = float(density), float(scale)

    @classmethod
    def from_domain(cls, domain: GraphDomain, scale: float = 0.25) -> "EdgeDensityPotential":
        """The potential at the training graphs' :func:`edge_density`."""
        return cls(edge_density(domain), scale)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        s = _check_state(x)
        a = s["adj"]
        sym = 0.5 * (a + a.transpose(1, 2))
        dev = (sym - (2.0 * self.density - 1.0)) ** 2 * _upper(_pairs(s["mask"], a.dtype))
        return dev.sum((1, 2)) / (2.0 * self.scale**2)


def edge_count(state: dict[str, Tensor]) -> Tensor:
    """``(B,)``: ``sum_{i < j} A_ij`` of the relaxed adjacency (:func:`relaxed_adjacency`).

    Example:
        >>> edge_count(encode([nx.complete_graph(4), nx.path_graph(3)], max_nodes=4)).tolist()
        [6.0, 2.0]
    """
    return 0.5 * relaxed_adjacency(state).sum((1, 2))


def triangle_count(state: dict[str, Tensor]) -> Tensor:
    """``(B,)``: ``trace(A^3) / 6`` of the relaxed adjacency (the number of triangles on ``{0, 1}``).

    Example:
        >>> triangle_count(encode([nx.complete_graph(4), nx.cycle_graph(4)])).tolist()
        [4.0, 0.0]
    """
    A = relaxed_adjacency(state)
    return ((A @ A) * A).sum((1, 2)) / 6.0  # trace(A A A) = sum_ij (A A)_ij A_ji, A symmetric


def max_degree(state: dict[str, Tensor], temperature: float = DEFAULT_MAX_DEGREE_TEMPERATURE) -> Tensor:
    """``(B,)``: a smooth maximum of the relaxed degrees, ``T * logsumexp(deg / T)`` over real nodes.

    ``max(deg) <= T logsumexp(deg / T) <= max(deg) + T log n``; ``temperature = 0`` is the
    exact (non-smooth) maximum. The gradient is spread over the nodes near the maximum
    by a softmax of temperature ``T``.

    Args:
        state (dict): graph state.
        temperature (float): ``T >= 0`` in units of degree (default 0.25).

    Example:
        >>> s = encode([nx.star_graph(4)])           # degrees 4, 1, 1, 1, 1
        >>> max_degree(s, temperature=0.0).tolist()
        [4.0]
        >>> 4.0 < float(max_degree(s)) < 4.0 + 0.25 * math.log(5)
        True
    """
    if not 0 <= float(temperature) < math.inf:
        raise InvalidValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    A = relaxed_adjacency(state)
    deg = A.sum(-1)
    real = state["mask"].bool().to(deg.device)
    if float(temperature) == 0.0:
        return deg.masked_fill(~real, -math.inf).amax(-1).clamp_min(0.0)
    t = float(temperature)
    return t * torch.logsumexp((deg / t).masked_fill(~real, -math.inf), dim=-1)


#: Differentiable statistics by name: ``name -> fn(state, **options) -> (B,)``.
STATISTICS: dict[str, Callable[..., Tensor]] = {
    "edge_count": edge_count, "triangle_count": triangle_count, "max_degree": max_degree,
}
#: Options that make a registered statistic exact on decoded graphs (what :func:`measure` reports).
_EXACT_OPTIONS: dict[str, dict[str, Any]] = {"max_degree": {"temperature": 0.0}}


def _resolve_statistic(statistic: Any) -> tuple[str, Callable[..., Tensor]]:
    if isinstance(statistic, str):
        if statistic not in STATISTICS:
            raise InvalidValueError(f"unknown graph statistic {statistic!r}; choose one of {', '.join(STATISTICS)} "
                                    "or pass a function state -> (B,)")
        return statistic, STATISTICS[statistic]
    if callable(statistic):
        return getattr(statistic, "__name__", type(statistic).__name__), statistic
    raise InvalidTypeError(f"statistic must be a name ({', '.join(STATISTICS)}) or a function state -> (B,), "
                           f"got {type(statistic).__name__}")


class GraphStatistic(Energy):
    """A soft constraint on a graph statistic: ``(stat(a) - target)^2 / (2 scale^2)`` per graph.

    A tempered term (a negative log-density), composed with the potential by ``+`` or
    handed to :class:`~energyflow.samplers.guided.GuidedLangevin` (see :func:`steer`).

    Args:
        statistic (str | Callable): a key of :data:`STATISTICS` or ``fn(state) -> (B,)``.
        target (float | Tensor): the target, a number or ``(B,)``.
        scale (float): the penalty's width in units of the statistic (> 0).
        **options: keyword options of the statistic (``temperature`` of :func:`max_degree`).

    Shapes:
        x: ``{"adj": (B, N, N), "mask": (B, N)}`` -> ``(B,)``

    Example:
        >>> term = GraphStatistic("triangle_count", target=2.0, scale=1.0)
        >>> term(encode([nx.complete_graph(4), nx.cycle_graph(4)])).tolist()   # 4 and 0 triangles
        [2.0, 2.0]
        >>> GraphStatistic("diameter", 1.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        energyflow.errors.InvalidValueError: unknown graph statistic 'diameter'; choose one of edge_count, ...
    """

    coupling = "tempered"

    def __init__(self, statistic: str | Callable[..., Tensor], target: float | Tensor, scale: float = 1.0,
                 **options: Any) -> None:
        super().__init__()
        self.statistic, fn = _resolve_statistic(statistic)
        self.fn = functools.partial(fn, **options) if options else fn
        self.options = dict(options)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < float(scale) < math.inf:
            raise InvalidValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        t = torch.as_tensor(target, dtype=torch.get_default_dtype())
        if t.dim() > 1 or not bool(torch.isfinite(t).all()):
            raise InvalidValueError(f"target must be a finite number or a (B,) tensor, got {target!r}")
        self.register_buffer("target", t)
        self._label = f"GraphStatistic({self.statistic})"

    def value(self, x: dict[str, Tensor]) -> Tensor:
        """The statistic itself, ``(B,)``."""
        out = self.fn(_check_state(x))
        b = x["adj"].shape[0]
        if not isinstance(out, Tensor) or tuple(out.shape) != (b,):
            raise InvalidValueError(f"{self.name}: the statistic returned "
                                    f"{tree.describe(out)} for a batch of {b}; it must return (B,)")
        return out

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        v = self.value(x)
        return (v - self.target.to(v)) ** 2 / (2.0 * self.scale**2)

    def extra_repr(self) -> str:
        return f"{self.statistic}, scale={self.scale}, coupling={self.coupling}"


def measure(graphs_or_state: Any, statistic: str | Callable[..., Tensor], **options: Any) -> Tensor:
    """The statistic of decoded graphs, ``(B,)``: exact counts for the registered names.

    States are decoded first (an edge where ``s_ij > 0``), so the value is that of the
    graphs a user gets; :func:`max_degree` is taken exactly (``temperature = 0``).

    Example:
        >>> measure([nx.star_graph(3), nx.complete_graph(3)], "max_degree").tolist()
        [3.0, 2.0]
    """
    name, fn = _resolve_statistic(statistic)
    if isinstance(graphs_or_state, (list, tuple)):
        state = encode(list(graphs_or_state))
    else:
        s = _check_state(graphs_or_state)
        state = {"adj": _signed(s), "mask": s["mask"].bool()}
    kwargs = {**_EXACT_OPTIONS.get(name, {}), **options} if isinstance(statistic, str) else options
    with torch.no_grad():
        return fn(state, **kwargs).detach().cpu()


def degree_profile(state: dict[str, Tensor]) -> Tensor:
    """``(B, N)``: the relaxed degrees sorted in decreasing order (padding contributes zeros).

    A permutation-invariant feature of a graph (two relabellings of one graph have the
    same profile), differentiable almost everywhere.

    Example:
        >>> degree_profile(encode([nx.star_graph(3)], max_nodes=5)).tolist()
        [[3.0, 1.0, 1.0, 1.0, 0.0]]
    """
    return relaxed_adjacency(state).sum(-1).sort(dim=-1, descending=True).values


#: What :func:`graph_repulsion` can act on: the adjacency leaf or a feature map of the state.
REPULSION_FEATURES: dict[str, str | Callable[[dict], Tensor]] = {"adjacency": "adj", "degrees": degree_profile}


def graph_repulsion(sigma: float = 2.0, group_size: int | None = None, *, on: str = "adjacency",
                    transport: bool = False) -> Energy:
    """The quadratic :class:`~energyflow.energies.interaction.Repulsion` between the graphs of a batch.

    ``W = -sum_{i<j} ||f_i - f_j||^2 / sigma^2``, tempered, where ``f`` is

    * ``on="adjacency"``: the adjacency leaf (padding entries are zero on the graph
      space, so only real pairs differ). Not permutation invariant: it drives each
      graph's entries away from the batch's mean adjacency, which for graphs in random
      node order is nearly the density everywhere, so it mostly sharpens and spreads
      the densities rather than the structures;
    * ``on="degrees"``: the sorted degree sequence (:func:`degree_profile`), invariant
      to node order.

    Its force on a graph is ``2 k eps (f_i - mean f) / sigma^2`` for ``k`` graphs in a
    group: grow ``sigma`` like ``sqrt(k)`` to keep it fixed as the batch grows.

    Tempered, it is multiplied by eps(t): under the graph preset (``tau_star = 1``) it
    acts only in the Langevin phase after ``t = 1``, at eps_max. ``transport=True``
    recouples it as an energy (:meth:`~energyflow.energies.base.Energy.fixed`), so it
    acts with its full weight from ``t = 0`` and pushes the transported graphs apart
    (its stationary effect is then ``exp(-W / eps)``, ``1 / eps`` times stronger: use a
    larger ``sigma``).

    Example:
        >>> s = encode([nx.path_graph(3), nx.complete_graph(3)])
        >>> graph_repulsion(sigma=2.0)(s).tolist()     # they differ by 2 on one pair (two entries)
        [-1.0, -1.0]
    """
    if on not in REPULSION_FEATURES:
        raise InvalidValueError(f"unknown repulsion features {on!r}; choose one of {', '.join(REPULSION_FEATURES)}")
    term = LeafEnergy(Repulsion(sigma=sigma, group_size=group_size), REPULSION_FEATURES[on])
    return term.fixed() if transport else term


# -- sampling ------------------------------------------------------------------------------


def default_sampler(method: str = "heun", t_end: float = 1.2) -> Langevin:
    """The community_small preset's Energy Matching sampler: dt 0.01, eps(t) with tau* = 1, eps_max = 0.05.

    For a trained run use :func:`energyflow.training.run.sampler_for` with its config.

    Example:
        >>> default_sampler().steps, default_sampler().schedule(1.1)
        (120, 0.05)
    """
    return Langevin(step_size=0.01, t_end=t_end, schedule=EnergyMatchingSchedule(1.0, 0.05), method=method)


def _run(potential: Energy, domain: GraphDomain, x0: dict[str, Tensor], sampler: Langevin | None,
         guide: Energy | None, extra: Sequence[Energy], guidance: bool, guidance_weight: float | None,
         generator: torch.Generator | None) -> SampleResult:
    """Samples ``potential (+ guide unless guided) + extra`` from ``x0`` with the Energy Matching sampler."""
    sampler = default_sampler() if sampler is None else sampler
    if not isinstance(sampler, Langevin):
        raise InvalidTypeError(f"sampler must be an energyflow Langevin (the Energy Matching sampler), "
                               f"got {type(sampler).__name__}")
    if guidance_weight is not None and not (guidance and guide is not None):
        raise InvalidValueError("guidance_weight applies only with guidance=True and a term to guide by")
    expr: Energy = potential
    if guide is not None and not guidance:
        expr = expr + guide
    for term in extra:
        expr = expr + term
    field = compile_field(expr, domain.space)
    runner = GuidedLangevin(sampler, guide, guidance_weight) if (guidance and guide is not None) else sampler
    return runner.run(field, x0, generator=generator)


def _generators(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    if generator is None:
        return torch.Generator(device).manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise InvalidTypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


@attrs.frozen(eq=False)
class CompletionResult:
    """Completed graphs.

    Attributes:
        samples (dict): the sampler's final states, ``{"adj": (B K, N, N), "mask": (B K, N)}``
            (``K = chains`` consecutive draws per graph), detached on the CPU.
        score (Tensor): ``(B, N, N)``: the symmetrised relaxation averaged over the chains
            (> 0 decodes to an edge; the ranking score of the AUC).
        prediction (Tensor): ``(B, N, N)`` bool: ``score > 0`` on real pairs.
        graphs (list[nx.Graph]): the predictions as graphs.
        known (Tensor): ``(B, N, N)`` bool: the observed real pairs.
        observed (Tensor): ``(B, N, N)``: ``+1`` / ``-1`` on the known pairs, 0 elsewhere.
        mask (Tensor): ``(B, N)`` bool node mask.
        edge_density (float): the training edge density (the baseline's predictor).
        noise (float): the likelihood's scale.
        chains (int): K.
        result (SampleResult): the sampler's raw result.
    """

    samples: dict
    score: Tensor
    prediction: Tensor
    graphs: list
    known: Tensor
    observed: Tensor
    mask: Tensor
    edge_density: float
    noise: float
    chains: int
    result: SampleResult


def complete(potential: nn.Module | Energy, domain: GraphDomain, graphs_or_state: Any, known: Tensor, *,
             noise: float = DEFAULT_NOISE, sampler: Langevin | None = None, chains: int = 1,
             guidance: bool = True, guidance_weight: float | None = None,
             generator: torch.Generator | None = None) -> CompletionResult:
    """Samples the hidden pairs of each graph given its known edges and non-edges.

    The posterior is ``exp(-V / eps_max) p(y | a)`` with ``p(y | a)`` the Gaussian
    likelihood of :func:`adjacency_observation`; the chains start from the domain's noise
    with each graph's node mask and run the Energy Matching sampler (see the module).

    Args:
        potential: the learned potential ``V`` (an Energy, e.g. from
            :func:`~energyflow.training.run.load_potential`, or a bare network).
        domain (GraphDomain): the potential's domain (its space and ``max_nodes``).
        graphs_or_state: the graphs whose known pairs are observed: a list of networkx
            graphs or a state ``{"adj": (B, N, N), "mask": (B, N)}`` (decoded, so only the
            sign of a known pair matters); hidden pairs are never read.
        known (Tensor): ``(B, N, N)`` bool, symmetric, True on observed pairs (entries on
            the diagonal or padding are ignored); :func:`random_known_mask` draws one.
        noise (float): the likelihood's standard deviation on the signed scale (> 0).
        sampler (Langevin | None): the Energy Matching sampler (default
            :func:`default_sampler`; ``sampler_for(cfg)`` for a trained run).
        chains (int): posterior draws per graph; ``score`` averages them.
        guidance (bool): let the likelihood guide the transport
            (:class:`~energyflow.samplers.guided.GuidedLangevin`); False adds it to the
            field, tempered by eps(t).
        guidance_weight (float | None): ``w`` of the guided sampler (default eps(t_end)).
        generator (torch.Generator | None): the noise (on the potential's device).

    Returns:
        CompletionResult: predictions of shape ``(B, N, N)`` and the raw draws.

    Raises:
        InvalidValueError: a bad ``known`` mask (shape, symmetry), ``noise <= 0``,
            ``chains < 1``, or a state not padded to the domain's ``max_nodes``.
        InvalidTypeError: ``known`` not a bool tensor, or a sampler of another kind.

    Example:
        >>> d = GraphDomain.from_graphs([nx.cycle_graph(5)] * 4, seed=0)
        >>> g = [nx.cycle_graph(5)]
        >>> known = torch.ones(1, 5, 5, dtype=torch.bool)
        >>> out = complete(EdgeDensityPotential.from_domain(d), d, g, known, sampler=default_sampler("euler"))
        >>> nx.is_isomorphic(out.graphs[0], g[0]), out.prediction.shape
        (True, torch.Size([1, 5, 5]))
    """
    if isinstance(chains, bool) or not isinstance(chains, int) or chains < 1:
        raise InvalidValueError(f"chains must be an integer >= 1, got {chains!r}")
    if not isinstance(domain, GraphDomain):
        raise InvalidTypeError(f"domain must be a GraphDomain, got {type(domain).__name__}")
    potential = _as_energy(potential)
    device = _device_of(potential)
    state = _as_state(domain, graphs_or_state, "graphs_or_state")
    known = _check_known(known, state)
    b = state["adj"].shape[0]
    rep = torch.arange(b).repeat_interleave(chains)
    state_k = tree.to(tree.index(state, rep), device)
    likelihood = adjacency_observation(state_k, known[rep].to(device), noise)
    gen = _generators(generator, device)
    x0 = domain.sample_source(like=state_k, generator=gen, device=device)
    result = _run(potential, domain, x0, sampler, likelihood, (), guidance, guidance_weight, gen)
    samples = tree.to(tree.detach(result.samples), "cpu")
    adj = samples["adj"]
    score = (0.5 * (adj + adj.transpose(1, 2))).reshape(b, chains, *adj.shape[1:]).mean(1)
    pair = _pairs(state["mask"].cpu())
    prediction = (score > 0) & pair
    graphs = dense_to_graphs(score, state["mask"].cpu().float(), threshold=0.0)
    return CompletionResult(samples=samples, score=score * pair, prediction=prediction, graphs=graphs,
                            known=known.cpu(), observed=_signed(state).cpu() * known.cpu(),
                            mask=state["mask"].cpu(), edge_density=edge_density(domain), noise=float(noise),
                            chains=chains, result=result)


def _auc(score: Tensor, label: Tensor) -> float:
    """Mann-Whitney AUC of ``score`` for the positives of ``label`` (ties count one half); NaN with one class."""
    score, label = score.double().flatten(), label.bool().flatten()
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    values, inverse, counts = torch.unique(score, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]  # average 1-based ranks of ties
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


@attrs.frozen
class CompletionScores:
    """What :func:`completion_accuracy` measured, pooled over the hidden (or known) pairs ``i < j``.

    Attributes:
        hidden_accuracy (float): the model's accuracy on the hidden real pairs.
        baseline_accuracy (float): predicting every hidden pair by the majority class
            under the training edge density (non-edge when the density is below 1/2).
        hidden_auc (float): AUC of the model's ``score`` on the hidden pairs (NaN when
            they hold one class); a constant predictor, the baseline, has 0.5.
        common_neighbours_auc (float): AUC of the number of known common neighbours, a
            heuristic that reads the observed edges only (link prediction's classic).
        known_kept (float): share of known pairs decoded as observed.
        hidden_pairs (int): hidden real pairs scored.
        known_pairs (int): known real pairs.
        edge_density (float): the training edge density.
        hidden_edge_fraction (float): edges among the hidden pairs in the truth.
    """

    hidden_accuracy: float
    baseline_accuracy: float
    hidden_auc: float
    common_neighbours_auc: float
    known_kept: float
    hidden_pairs: int
    known_pairs: int
    edge_density: float
    hidden_edge_fraction: float

    def as_dict(self) -> dict[str, float]:
        """The scores as a dict (for JSON and tables)."""
        return attrs.asdict(self)


def completion_accuracy(result: CompletionResult, truth: Any, known: Tensor | None = None) -> CompletionScores:
    """Scores a completion on the hidden real pairs against the held-out truth.

    Args:
        result (CompletionResult): from :func:`complete`.
        truth: the true graphs (networkx list or state, same order, padding and node counts).
        known (Tensor | None): the known mask; default ``result.known``.

    Returns:
        CompletionScores: model vs edge-frequency baseline, AUCs, and how often the known
        pairs were kept. With no hidden pair the accuracies are NaN.

    Raises:
        InvalidValueError: ``truth`` or ``known`` does not match the result's graphs.

    Example:
        >>> d = GraphDomain.from_graphs([nx.path_graph(5)] * 4, seed=0)   # density 0.4
        >>> truth = encode([nx.path_graph(5)])
        >>> known = random_known_mask(truth, 0.5)
        >>> out = complete(EdgeDensityPotential.from_domain(d), d, truth, known, sampler=default_sampler("euler"))
        >>> s = completion_accuracy(out, truth)     # the density potential predicts non-edges, as the baseline
        >>> s.hidden_pairs, s.known_kept, s.hidden_accuracy == s.baseline_accuracy
        (5, 1.0, True)
    """
    if not isinstance(result, CompletionResult):
        raise InvalidTypeError(f"result must be a CompletionResult, got {type(result).__name__}")
    if isinstance(truth, (list, tuple)):
        if len(truth) != result.mask.shape[0]:
            raise InvalidValueError(f"truth holds {len(truth)} graphs, the completion {result.mask.shape[0]}")
        t = encode(list(truth), result.mask.shape[1])
    else:
        t = _check_state(truth, "truth")
        t = {"adj": t["adj"].detach().cpu(), "mask": t["mask"].bool().cpu()}
    if tuple(t["adj"].shape) != tuple(result.prediction.shape) or not bool((t["mask"] == result.mask).all()):
        raise InvalidValueError(f"truth {tree.describe(t)} does not match the completed graphs "
                                f"(adjacency {tuple(result.prediction.shape)}, same node masks)")
    known = result.known if known is None else _check_known(known.cpu(), t)
    upper = _upper(_pairs(t["mask"]).float()).bool()
    hidden, seen = upper & ~known, upper & known
    true_edge = _signed(t) > 0
    pred = result.prediction
    majority = result.edge_density >= 0.5
    nan = float("nan")
    n_hidden = int(hidden.sum())
    k = (known & true_edge).float()
    common = k @ k
    return CompletionScores(
        hidden_accuracy=float((pred == true_edge)[hidden].float().mean()) if n_hidden else nan,
        baseline_accuracy=float((true_edge[hidden] == majority).float().mean()) if n_hidden else nan,
        hidden_auc=_auc(result.score[hidden], true_edge[hidden]) if n_hidden else nan,
        common_neighbours_auc=_auc(common[hidden], true_edge[hidden]) if n_hidden else nan,
        known_kept=float((pred == (result.observed > 0))[seen].float().mean()) if bool(seen.any()) else nan,
        hidden_pairs=n_hidden, known_pairs=int(seen.sum()), edge_density=float(result.edge_density),
        hidden_edge_fraction=float(true_edge[hidden].float().mean()) if n_hidden else nan,
    )


# -- steering and diversity ------------------------------------------------------------------


def _mmd(graphs: list, reference: list | None) -> dict[str, float]:
    from energyflow.domains.graph.metrics import mmd_table

    return {} if reference is None else {k: float(v) for k, v in mmd_table(graphs, reference, "gdss").items()}


def _reference(domain: GraphDomain, reference: Any, mmd: bool) -> list | None:
    if not mmd:
        return None
    if reference is None:
        return list(domain.test_graphs)
    if isinstance(reference, (list, tuple)) and reference and all(isinstance(g, nx.Graph) for g in reference):
        return list(reference)
    return domain.decode(_check_state(reference, "reference"))


def _paired_runs(potential: Energy, domain: GraphDomain, n: int, sampler: Langevin | None, generator: Any,
                 guide: Energy | None, extra: Sequence[Energy], guidance: bool,
                 guidance_weight: float | None) -> tuple[SampleResult, dict, dict]:
    """The conditioned run and its unconditional control from the same start and noise stream."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValueError(f"n must be a positive integer, got {n!r}")
    device = _device_of(potential)
    gen = _generators(generator, device)
    x0 = domain.sample_source(n, generator=gen, device=device)
    start = gen.get_state()
    result = _run(potential, domain, x0, sampler, guide, extra, guidance, guidance_weight, gen)
    gen.set_state(start)  # common random numbers: the control differs only by the terms
    control = _run(potential, domain, x0, sampler, None, (), guidance, None, gen)
    return result, tree.to(tree.detach(result.samples), "cpu"), tree.to(tree.detach(control.samples), "cpu")


@attrs.frozen(eq=False)
class SteeringResult:
    """Steered samples and the unconditional control drawn from the same noise.

    Attributes:
        statistic (str): the statistic's name.
        target (float): its target.
        graphs (list[nx.Graph]): steered graphs; ``control_graphs`` unconditional ones.
        values (Tensor): ``(n,)`` the statistic of the steered graphs (decoded, exact for
            registered names, :func:`measure`); ``control_values`` of the control.
        mmd (dict[str, float]): GDSS MMD² (degree, clustering, orbit, spectral) of the
            steered graphs against the reference (test) graphs; ``control_mmd`` of the
            control; empty when not computed.
        samples (dict): the steered states (CPU).
        result (SampleResult): the steered run.
    """

    statistic: str
    target: float
    graphs: list
    values: Tensor
    control_graphs: list
    control_values: Tensor
    mmd: dict
    control_mmd: dict
    samples: dict
    result: SampleResult

    @property
    def shift(self) -> float:
        """Mean statistic of the steered graphs minus that of the control."""
        return float(self.values.double().mean() - self.control_values.double().mean())

    @property
    def error(self) -> float:
        """Mean ``|value - target|`` of the steered graphs (``control_error``: of the control)."""
        return float((self.values.double() - self.target).abs().mean())

    @property
    def control_error(self) -> float:
        return float((self.control_values.double() - self.target).abs().mean())


def steer(potential: nn.Module | Energy, domain: GraphDomain, n: int, statistic: str | Callable[..., Tensor],
          target: float, *, scale: float = 1.0, options: dict | None = None, sampler: Langevin | None = None,
          guidance: bool = True, guidance_weight: float | None = None, generator: torch.Generator | None = None,
          mmd: bool = True, reference: Any = None) -> SteeringResult:
    """Generates ``n`` graphs under ``V + GraphStatistic(statistic, target, scale)`` and a control under ``V``.

    Both runs start from the same noise (node counts drawn from the training graphs) and
    use the same noise stream, so the difference is the term's doing.

    Args:
        potential: the learned potential.
        domain (GraphDomain): its domain.
        n (int): graphs to generate.
        statistic: a key of :data:`STATISTICS` or ``fn(state) -> (B,)``.
        target (float): the statistic's target.
        scale (float): the Gaussian penalty's width (> 0); smaller pulls harder.
        options (dict | None): the statistic's options (``{"temperature": 0.5}``).
        sampler, guidance, guidance_weight, generator: as in :func:`complete`; with
            guidance the term steers the transport through its predicted endpoint.
        mmd (bool): compute the GDSS MMD² of both sets against ``reference``.
        reference: graphs or a state (default the domain's test graphs).

    Returns:
        SteeringResult: the graphs, their statistics, ``shift`` and the MMDs.

    Example:
        >>> d = GraphDomain.from_graphs([nx.path_graph(6)] * 6, seed=0)
        >>> V = EdgeDensityPotential.from_domain(d, scale=1.0)      # about 5 edges on 15 pairs
        >>> out = steer(V, d, 8, "edge_count", 12.0, scale=0.25, mmd=False, sampler=default_sampler("euler"),
        ...             generator=torch.Generator().manual_seed(0))
        >>> out.shift > 3
        True
    """
    potential = _as_energy(potential)
    term = GraphStatistic(statistic, target, scale, **(options or {})).to(_device_of(potential))
    ref = _reference(domain, reference, mmd)
    result, steered, control = _paired_runs(potential, domain, n, sampler, generator, term, (), guidance,
                                            guidance_weight)
    graphs, control_graphs = domain.decode(steered), domain.decode(control)
    stat = statistic if isinstance(statistic, str) else term.fn  # registered names are measured exactly
    return SteeringResult(statistic=term.statistic, target=float(target), graphs=graphs,
                          values=measure(steered, stat), control_graphs=control_graphs,
                          control_values=measure(control, stat), mmd=_mmd(graphs, ref),
                          control_mmd=_mmd(control_graphs, ref), samples=steered, result=result)


def _sorted_degrees(g: nx.Graph, length: int) -> np.ndarray:
    deg = sorted((d for _, d in g.degree()), reverse=True)
    return np.pad(np.asarray(deg, dtype=float), (0, length - len(deg)))


def _spectrum_quantiles(g: nx.Graph, q: np.ndarray) -> np.ndarray:
    if g.number_of_nodes() == 0:
        return np.zeros_like(q)
    lap = nx.normalized_laplacian_matrix(g, nodelist=sorted(g.nodes())).toarray()
    eig = np.sort(np.linalg.eigvalsh(lap))
    return np.quantile(eig, q, method="inverted_cdf")


@attrs.frozen
class DiversityScores:
    """How different the graphs of a set are.

    Attributes:
        unique (float): fraction of graphs isomorphic to no earlier one
            (:func:`~energyflow.domains.graph.validity.fraction_unique`).
        degree_l1 (float): mean over pairs of the L1 distance of the sorted degree
            sequences (zero-padded to equal length); 0 for identical degree sequences.
        spectral_w1 (float): mean over pairs of the 1-Wasserstein distance of the
            normalised Laplacian spectra (their eigenvalue distributions, in [0, 2]).
        graphs (int): the set's size.
    """

    unique: float
    degree_l1: float
    spectral_w1: float
    graphs: int

    def as_dict(self) -> dict[str, float]:
        return attrs.asdict(self)


def diversity(graphs_or_state: Any) -> DiversityScores:
    """Uniqueness and two mean pairwise distances of a set of graphs (NaN distances for one graph).

    Example:
        >>> s = diversity([nx.path_graph(4), nx.star_graph(3), nx.path_graph(4)])
        >>> round(s.unique, 3), round(s.degree_l1, 3)       # degrees 2211, 3111, 2211
        (0.667, 1.333)
    """
    from energyflow.domains.graph.validity import fraction_unique

    if isinstance(graphs_or_state, (list, tuple)):
        graphs = list(graphs_or_state)
        if not graphs or not all(isinstance(g, nx.Graph) for g in graphs):
            raise InvalidValueError("diversity needs a non-empty list of networkx graphs or a graph state")
    else:
        s = _check_state(graphs_or_state, "graphs_or_state")
        graphs = dense_to_graphs(s["adj"], s["mask"].float(), threshold=0.0)
    k = len(graphs)
    if k < 2:
        return DiversityScores(fraction_unique(graphs), float("nan"), float("nan"), k)
    length = max(g.number_of_nodes() for g in graphs)
    deg = np.stack([_sorted_degrees(g, length) for g in graphs])
    q = (np.arange(100) + 0.5) / 100
    spec = np.stack([_spectrum_quantiles(g, q) for g in graphs])
    iu = np.triu_indices(k, 1)
    d_deg = np.abs(deg[:, None] - deg[None]).sum(-1)[iu].mean()
    d_spec = np.abs(spec[:, None] - spec[None]).mean(-1)[iu].mean()
    return DiversityScores(fraction_unique(graphs), float(d_deg), float(d_spec), k)


@attrs.frozen(eq=False)
class DiversityResult:
    """Samples under ``V + repulsion`` and the control under ``V`` from the same noise.

    Attributes:
        graphs, control_graphs (list[nx.Graph]): the two sets.
        diversity, control_diversity (DiversityScores): their diversity.
        mmd, control_mmd (dict[str, float]): GDSS MMD² against the reference (empty when not computed).
        sigma (float): the repulsion's bandwidth; ``group_size`` its groups (None: the whole batch);
            ``on`` what it acted on; ``transport`` whether it acted during the transport.
        result (SampleResult): the repulsed run.
    """

    graphs: list
    control_graphs: list
    diversity: DiversityScores
    control_diversity: DiversityScores
    mmd: dict
    control_mmd: dict
    sigma: float
    group_size: int | None
    on: str
    transport: bool
    result: SampleResult


def diverse(potential: nn.Module | Energy, domain: GraphDomain, n: int, sigma: float = 2.0, *,
            group_size: int | None = None, on: str = "adjacency", transport: bool = False,
            sampler: Langevin | None = None,
            generator: torch.Generator | None = None, mmd: bool = True, reference: Any = None) -> DiversityResult:
    """Generates ``n`` graphs under ``V + graph_repulsion(sigma, group_size)`` and a control under ``V``.

    Args:
        potential, domain, n, sampler, generator, mmd, reference: as in :func:`steer`.
        sigma (float): the repulsion's bandwidth (> 0; larger is weaker, see :func:`graph_repulsion`).
        group_size (int | None): graphs repel only within consecutive groups of this size.
        on (str): what the graphs repel by, ``"adjacency"`` or ``"degrees"`` (see :func:`graph_repulsion`).
        transport (bool): let the repulsion act during the transport too (see :func:`graph_repulsion`).

    Example:
        >>> d = GraphDomain.from_graphs([nx.path_graph(5)] * 6, seed=0)
        >>> out = diverse(EdgeDensityPotential.from_domain(d), d, 6, sigma=3.0, mmd=False,
        ...               sampler=default_sampler("euler"))
        >>> out.diversity.graphs, out.control_diversity.graphs
        (6, 6)
    """
    potential = _as_energy(potential)
    repulsion = graph_repulsion(sigma, group_size, on=on, transport=transport)
    ref = _reference(domain, reference, mmd)
    result, repelled, control = _paired_runs(potential, domain, n, sampler, generator, None, (repulsion,), False,
                                             None)
    graphs, control_graphs = domain.decode(repelled), domain.decode(control)
    return DiversityResult(graphs=graphs, control_graphs=control_graphs, diversity=diversity(graphs),
                           control_diversity=diversity(control_graphs), mmd=_mmd(graphs, ref),
                           control_mmd=_mmd(control_graphs, ref), sigma=float(sigma), group_size=group_size,
                           on=on, transport=bool(transport), result=result)


def completion_run(run: str, out: str, *, fraction: float = 0.3, chains: int = 4, num_graphs: int | None = None,
                   seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """``energyflow condition RUN --task complete``: hide ``fraction`` of each test graph's pairs and complete them.

    Loads the trained graph run, draws a known mask per test graph (:func:`random_known_mask`),
    samples the hidden pairs (:func:`complete`, the run's own Energy Matching sampler), and
    writes ``completion.json`` (the :class:`CompletionScores`) and ``completion.png`` (true
    graphs above, completions below) into ``out``.

    Returns:
        dict: the scores, the files written, the number of graphs and the fraction hidden.

    Raises:
        InvalidValueError: the run is not a graph run, or ``fraction``/``chains`` are out of range.
    """
    import json
    from pathlib import Path

    from energyflow.plotting import plot_graph_grid, save_figure
    from energyflow.training.run import load_potential, sampler_for

    potential, cfg, domain = load_potential(run, device=device)
    if not isinstance(domain, GraphDomain):
        raise InvalidValueError(f"--task complete needs a graph run; {run} is a {cfg.domain} run")
    if chains < 1:
        raise InvalidValueError(f"chains must be >= 1, got {chains}")
    truth = domain.test_data(num_graphs)
    known = random_known_mask(truth, fraction, torch.Generator().manual_seed(seed))
    result = complete(potential, domain, truth, known, sampler=sampler_for(cfg), chains=chains,
                      generator=torch.Generator(_device_of(potential)).manual_seed(seed + 1))
    scores = completion_accuracy(result, truth, known)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"run": str(run), "fraction_hidden": fraction, "chains": chains, "graphs": len(result.graphs),
               **scores.as_dict()}
    tmp = folder / ".completion.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(folder / "completion.json")
    shown = min(8, len(result.graphs))
    fig = plot_graph_grid([("held-out graphs", domain.decode(truth)[:shown]),
                           (f"completed ({fraction:.0%} of pairs hidden)", result.graphs[:shown])], ncol=shown)
    files = [folder / "completion.json", save_figure(fig, folder / "completion.png")]
    return {"scores": scores, "files": files, "graphs": len(result.graphs), "fraction": fraction}
