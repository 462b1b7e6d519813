"""Warm-up adaptation as in Stan: dual-averaging step size, windowed mass matrix.

:func:`window_adaptation` runs a kernel for ``num_warmup`` iterations over all chains:

* the step size follows Nesterov dual averaging (Hoffman & Gelman 2014, Stan's
  defaults ``gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 h)``) on the acceptance
  probability averaged over chains, towards ``target_accept``; the final step size is
  the averaged iterate;
* chains that stop moving (no acceptance over a stretch of warm-up while their
  potential is worse than the median) or are stranded far above the others' potential
  (a minor mode) are restarted from other chains' states at the end of the initial
  buffer and of every slow window, and counted (see :func:`stuck_chains`); after
  warm-up chains are never moved;
* with ``groups`` (:class:`ChainGroups`: the chains of one batch sample several
  targets, e.g. the chains of N measurements of one inverse problem), a chain is judged
  against the chains of its own group only (medians and spreads per group) and restarted
  only from a chain of its own group; a group with no healthy chain is left alone. The
  step size and the mass matrix stay shared by all chains (one kernel for the batch):
  the dual-averaging statistic is the acceptance probability averaged over all chains,
  and the mass matrix is the **within-group** (co)variance, each group's draws taken
  about its own mean, so that the distance between the groups' targets does not count
  as spread;
* with ``mass_matrix="diag"`` or ``"dense"``, Stan's windows: a fast initial buffer
  (75 iterations), slow windows of 25, 50, 100, ... iterations (the last one stretched
  to the terminal buffer) and a fast terminal buffer (50); for fewer than 150 warm-up
  iterations the buffers are 15 % / 75 % / 10 %. At the end of each slow window the
  inverse mass matrix becomes the variance (or covariance) of the positions of **all
  chains** over the window (stuck chains excluded; within groups, see above), shrunk
  towards ``1e-3`` as Stan does (``n / (n + 5) * var + 1e-3 * 5 / (n + 5)``, ``n`` the
  number of draws), and the step size search and dual averaging restart.

Warm-up and sampling are separate phases: adaptation changes the kernel only during
warm-up; samples are drawn afterwards with the adapted, fixed kernel.

Example:
    >>> import torch
    >>> da = DualAveraging.start(0.1)
    >>> for _ in range(200):
    ...     da = da.update(0.3)        # always accepting too rarely: the step size shrinks
    >>> da.step_size < 0.1
    True
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.samplers.kernel import Info, State, Stats
from energyflow.samplers.metric import DenseMetric, DiagonalMetric, IdentityMetric, Metric
from energyflow.spaces import Euclidean, Space

MASS_MATRICES = ("diag", "dense")


@attrs.frozen
class DualAveraging:
    """Nesterov dual averaging of ``log step_size`` (Stan's constants)."""

    log_step: float
    log_step_bar: float
    h_bar: float
    t: int
    mu: float
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    @classmethod
    def start(cls, step_size: float) -> "DualAveraging":
        return cls(math.log(step_size), 0.0, 0.0, 0, math.log(10.0 * step_size))

    def update(self, accept_prob: float, target: float = 0.8) -> "DualAveraging":
        """One update with the iteration's mean acceptance probability."""
        t = self.t + 1
        eta = 1.0 / (t + self.t0)
        h_bar = (1.0 - eta) * self.h_bar + eta * (target - accept_prob)
        log_step = self.mu - math.sqrt(t) / self.gamma * h_bar
        w = t ** (-self.kappa)
        log_step_bar = w * log_step + (1.0 - w) * self.log_step_bar
        return attrs.evolve(self, log_step=log_step, log_step_bar=log_step_bar, h_bar=h_bar, t=t)

    @property
    def step_size(self) -> float:
        """The current iterate (used during warm-up)."""
        return math.exp(self.log_step)

    @property
    def final_step_size(self) -> float:
        """The averaged iterate (used after warm-up)."""
        return math.exp(self.log_step_bar) if self.t > 0 else self.step_size


def windows(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25) -> tuple[int, list[int]]:
    """Stan's slow windows: the first slow iteration and the iterations at which windows close.

    Iterations are 0-based; a window closing at ``e`` holds iterations ``< e``. Returns
    ``(num_warmup, [])`` when ``num_warmup < 20`` (step size only).

    Example:
        >>> windows(1000)
        (75, [100, 150, 250, 450, 950])
        >>> windows(100)
        (15, [90])
    """
    if num_warmup < 20:
        return num_warmup, []
    if init_buffer + term_buffer + base_window > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - init_buffer - term_buffer
    ends, start, size = [], init_buffer, base_window
    slow_end = num_warmup - term_buffer
    while start < slow_end:
        end = start + size
        if end + 2 * size > slow_end:  # the next window would not fit: stretch this one
            end = slow_end
        ends.append(end)
        start, size = end, 2 * size
    return init_buffer, ends


@attrs.frozen(eq=False)
class ChainGroups:
    """A partition of a batch's chains into groups that share a target.

    Build it with :meth:`of` from the caller's labels ``chain_groups`` ``(B,)`` (any
    integers; chains with equal labels form a group).

    Attributes:
        index (Tensor): long ``(B,)``: each chain's group, ``0 .. G - 1`` in the order of
            the sorted labels.
        labels (list[int]): the caller's label of each group, ``G`` of them, sorted.
        members (list[Tensor]): the chains of each group, long index tensors.

    Example:
        >>> groups = ChainGroups.of(torch.tensor([7, 7, 3, 3, 3]), 5, torch.device("cpu"))
        >>> groups.labels, groups.index.tolist(), [m.tolist() for m in groups.members]
        ([3, 7], [1, 1, 0, 0, 0], [[2, 3, 4], [0, 1]])
    """

    index: Tensor
    labels: list
    members: list

    @classmethod
    def of(cls, chain_groups: object, chains: int, device: torch.device) -> "ChainGroups | None":
        """Checks and partitions ``chain_groups`` (None, a tensor or a sequence of ints, ``(B,)``).

        Raises:
            InvalidValueError: not a one-dimensional integer array of ``chains`` labels.
        """
        if chain_groups is None:
            return None
        try:
            labels = torch.as_tensor(chain_groups)
        except (TypeError, ValueError, RuntimeError) as err:
            raise InvalidValueError(
                f"chain_groups must be a (B,) integer tensor of group labels: {err}") from None
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise InvalidValueError(f"chain_groups must hold integer group labels, got dtype {labels.dtype}")
        if tuple(labels.shape) != (chains,):
            raise InvalidValueError(
                f"chain_groups must be one label per chain, shape ({chains},), got {tuple(labels.shape)}")
        labels = labels.to(device=device, dtype=torch.long)
        unique, index = torch.unique(labels, sorted=True, return_inverse=True)
        order = torch.argsort(index, stable=True)
        counts = torch.bincount(index, minlength=unique.numel()).tolist()
        return cls(index, [int(v) for v in unique.tolist()], list(torch.split(order, counts)))

    @property
    def num_groups(self) -> int:
        return len(self.labels)


class Moments:
    """Streaming per-chain mean and (co)variance of draws ``(B, D)`` in float64 (Welford),
    pooled over any subset of chains on demand (Chan's combination), optionally within
    groups of chains."""

    def __init__(self, chains: int, dim: int, dense: bool, device: torch.device) -> None:
        self.n = 0
        self.mean = torch.zeros(chains, dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros((chains, dim, dim) if dense else (chains, dim), dtype=torch.float64, device=device)
        self.dense = dense

    def add(self, x: Tensor) -> None:
        """One draw per chain, ``(B, D)``."""
        x = x.to(torch.float64)
        self.n += 1
        delta = x - self.mean
        self.mean = self.mean + delta / self.n
        after = x - self.mean
        self.m2 = self.m2 + (delta.unsqueeze(2) * after.unsqueeze(1) if self.dense else delta * after)

    def pooled(self, keep: Tensor | None = None, groups: Tensor | None = None) -> tuple[int, Tensor, Tensor]:
        """``(number of draws, mean (D,), sum of squared deviations)`` over the kept chains.

        With ``groups`` (long ``(B,)``, each chain's group) the deviations are taken about
        each group's own mean (the within-group sum of squares); the mean returned is
        still the grand mean.
        """
        mean, m2 = (self.mean, self.m2) if keep is None else (self.mean[keep], self.m2[keep])
        grand = mean.mean(0)
        if groups is None:
            dev = mean - grand
        else:
            g = groups if keep is None else groups[keep]
            _, g = torch.unique(g, return_inverse=True)
            size = torch.bincount(g).to(mean.dtype)
            centre = torch.zeros(size.numel(), mean.shape[1], dtype=mean.dtype, device=mean.device)
            centre = centre.index_add(0, g, mean) / size.unsqueeze(1)
            dev = mean - centre[g]
        spread = dev.T @ dev if self.dense else (dev * dev).sum(0)
        return self.n * mean.shape[0], grand, m2.sum(0) + self.n * spread

    def regularised(self, keep: Tensor | None = None, groups: Tensor | None = None) -> Tensor:
        """Stan's shrunk estimate ``n/(n+5) var + 1e-3 * 5/(n+5)`` (times the identity for
        dense) from the draws of the kept chains (all by default); with ``groups`` (long
        ``(B,)``) the pooled within-group estimate (``n - G`` degrees of freedom for ``G``
        groups among the kept chains)."""
        n, _, m2 = self.pooled(keep, groups)
        if groups is None:
            fitted = 1
        else:
            fitted = int(torch.unique(groups if keep is None else groups[keep]).numel())
        var = m2 / max(n - fitted, 1)
        shrink = 1e-3 * 5.0 / (n + 5.0)
        if self.dense:
            return (n / (n + 5.0)) * var + shrink * torch.eye(var.shape[0], dtype=var.dtype, device=var.device)
        return (n / (n + 5.0)) * var + shrink


def stuck_chains(acceptance: Tensor, potential: Tensor, threshold: float = 0.02, gap: float = 25.0) -> Tensor:
    """Chains that warm-up should restart: stopped or stranded.

    * **stopped**: mean acceptance probability over the last stretch of warm-up below
      ``threshold`` and a potential above the median. With a step size shared by
      hundreds of chains, a chain started in a stiff region (a funnel's neck) rejects
      every proposal while the average acceptance sits at its target.
    * **stranded**: a potential more than ``max(gap, 10 s)`` above the median (``gap``
      nats: a density ``e^-25`` times the typical chain's), although it may still move,
      as in a minor mode where a mixture's components merge. ``s`` is the spread of the
      better half of the chains (median minus the 10 % quantile, so stranded chains
      cannot inflate it); it keeps legitimate tails of high-dimensional targets (whose
      potentials spread like ``sqrt(D / 2)``) from counting.

    Args:
        acceptance (Tensor): per-chain mean acceptance probability, ``(B,)``.
        potential (Tensor): per-chain ``-log pi``, ``(B,)``.
        threshold (float): acceptance below which a chain has stopped.
        gap (float): the smallest potential gap (nats) that strands a chain.

    Returns:
        Tensor: bool ``(B,)``.
    """
    finite = torch.isfinite(potential)
    if not bool(finite.any()):
        return ~finite
    ok = potential[finite].to(torch.float64)
    median = ok.median()
    spread = median - torch.quantile(ok, 0.1)
    far = potential.to(torch.float64) - median > max(gap, 10.0 * float(spread))
    stopped = (acceptance < threshold) & (potential > median)
    return ~finite | stopped | far


def grouped_stuck_chains(acceptance: Tensor, potential: Tensor, groups: ChainGroups | None) -> Tensor:
    """:func:`stuck_chains` within each group (median and spread of the group's own chains).

    Without groups, :func:`stuck_chains` on the whole batch (none for a single chain); a
    group of one chain is never stuck (it has no other chain to be judged against).

    Returns:
        Tensor: bool ``(B,)``.
    """
    if groups is None:
        if potential.shape[0] > 1:
            return stuck_chains(acceptance, potential)
        return torch.zeros(potential.shape[0], dtype=torch.bool, device=potential.device)
    stuck = torch.zeros(potential.shape[0], dtype=torch.bool, device=potential.device)
    for idx in groups.members:
        if idx.numel() > 1:
            stuck[idx] = stuck_chains(acceptance[idx], potential[idx])
    return stuck


def restartable(stuck: Tensor, groups: ChainGroups | None) -> Tensor:
    """The stuck chains that can be restarted: those with a chain that is not stuck in
    their group (in the batch without groups). Bool ``(B,)``."""
    if groups is None:
        return stuck if bool(stuck.any()) and not bool(stuck.all()) else torch.zeros_like(stuck)
    healthy = torch.bincount(groups.index[~stuck], minlength=groups.num_groups)
    return stuck & (healthy[groups.index] > 0)


def restart(state: State, stuck: Tensor, generator: torch.Generator | None,
            groups: ChainGroups | None = None) -> State:
    """Moves each stuck chain onto the state of a chain drawn uniformly from the others
    that are not stuck: from its own group with ``groups`` (stuck chains of a group with
    no healthy chain stay where they are)."""
    if groups is not None:
        index = torch.arange(stuck.shape[0], device=stuck.device)
        device = generator.device if generator is not None else stuck.device
        for idx in groups.members:
            mine = stuck[idx]
            moved = int(mine.sum())
            if moved == 0 or moved == idx.numel():
                continue
            good = idx[~mine]
            draw = torch.randint(0, good.numel(), (moved,), generator=generator, device=device)
            index[idx[mine]] = good[draw.to(good.device)]
        return State(tree.index(state.position, index), state.potential[index], tree.index(state.grad, index),
                     {k: tree.index(v, index) for k, v in state.aux.items()})
    good = (~stuck).nonzero().flatten()
    device = generator.device if generator is not None else good.device
    pick = good[torch.randint(0, good.numel(), (int(stuck.sum()),), generator=generator, device=device).to(good.device)]
    index = torch.arange(stuck.shape[0], device=stuck.device)
    index[stuck] = pick
    donor = State(tree.index(state.position, index), state.potential[index], tree.index(state.grad, index),
                  {k: tree.index(v, index) for k, v in state.aux.items()})
    return donor


KernelFactory = Callable[[float, Metric], Callable[[State, "torch.Generator | None"], "tuple[State, Info]"]]


def find_step_size(
    make_step: KernelFactory,
    state: State,
    step_size: float,
    metric: Metric,
    generator: torch.Generator | None,
    target: float,
    max_tries: int = 20,
) -> float:
    """A starting step size: doubles or halves ``step_size`` until the mean acceptance
    probability of one kernel step crosses ``target`` (Stan's heuristic, on all chains).

    The trial steps are discarded; each costs one kernel step's gradient evaluations.
    """
    def accept(h: float) -> float:
        _, info = make_step(h, metric)(state, generator)
        return float(info.acceptance_prob.mean())

    a = accept(step_size)
    direction = 1.0 if a > target else -1.0
    for _ in range(max_tries):
        trial = step_size * (2.0 ** direction)
        a = accept(trial)
        if (direction > 0 and a < target) or (direction < 0 and a > target):
            return step_size if direction > 0 else trial
        step_size = trial
    return step_size


@attrs.frozen(eq=False)
class Adapted:
    """What warm-up found.

    Attributes:
        state (State): the chains after warm-up.
        step_size (float): the adapted step size (in the kernel's units).
        metric (Metric): the adapted metric (identity unless a mass matrix was adapted).
        stats (Stats): per-chain warm-up statistics.
        step_size_trace (list[float]): the step size used at every warm-up iteration.
        num_restarted (int): chains found stuck during warm-up and moved onto other
            chains' states (see :func:`stuck_chains`).
        initial_step_size (float | None): what the first step-size search found (None
            without step-size adaptation): the yardstick of a collapsed step size.
        restarted_per_group (dict[int, int] | None): with groups, the restarts of each
            group, by the caller's label (every group, zeros included); None without.
    """

    state: State
    step_size: float
    metric: Metric
    stats: Stats
    step_size_trace: list[float]
    num_restarted: int = 0
    initial_step_size: float | None = None
    restarted_per_group: dict | None = None


def window_adaptation(
    make_step: KernelFactory,
    state: State,
    num_warmup: int,
    generator: torch.Generator | None,
    *,
    space: Space,
    step_size: float,
    metric: Metric,
    target_accept: float,
    adapt_step_size: bool = True,
    mass_matrix: str | None = None,
    groups: ChainGroups | None = None,
) -> Adapted:
    """Runs ``num_warmup`` adapting iterations of the kernel ``make_step(step_size, metric)``.

    Args:
        make_step (Callable): ``(step_size, metric) -> step(state, generator)``.
        state (State): the chains to start from.
        num_warmup (int): warm-up iterations (>= 0).
        generator (torch.Generator | None): the random stream.
        space (Space): the state space (mass matrices need a Euclidean one).
        step_size (float): the initial step size.
        metric (Metric): the initial metric.
        target_accept (float): the acceptance probability dual averaging aims for.
        adapt_step_size (bool): adapt the step size (else keep ``step_size``).
        mass_matrix (str | None): ``"diag"``, ``"dense"`` or None (keep ``metric``).
        groups (ChainGroups | None): chains that share a target (see the module's
            docstring): restarts, their medians and thresholds, and the mass matrix's
            deviations are taken within groups; None: all chains share one target.

    Returns:
        Adapted: the chains, step size, metric and warm-up statistics.
    """
    if mass_matrix is not None and mass_matrix not in MASS_MATRICES:
        raise InvalidValueError(f"mass_matrix must be one of {MASS_MATRICES} or None, got {mass_matrix!r}")
    if mass_matrix is not None and (not isinstance(state.position, Tensor) or not isinstance(space, Euclidean)):
        raise InvalidValueError(
            f"mass-matrix adaptation needs tensor states on a Euclidean space, not {space!r}; "
            "use mass_matrix=None (the step size still adapts)"
        )
    stats = Stats.zeros(state.potential)
    trace: list[float] = []
    per_group = None if groups is None else torch.zeros(groups.num_groups, dtype=torch.long,
                                                         device=groups.index.device)

    def counts() -> dict | None:
        return None if per_group is None else dict(zip(groups.labels, per_group.tolist()))

    if num_warmup == 0:
        return Adapted(state, step_size, metric, stats, trace, restarted_per_group=counts())
    initial = None
    if adapt_step_size:
        step_size = initial = find_step_size(make_step, state, step_size, metric, generator, target_accept)
    da = DualAveraging.start(step_size)
    first, ends = windows(num_warmup)
    # Chains are checked for being stuck at the end of the initial buffer and of every
    # slow window (warm-up draws are discarded, so moving a chain there is harmless).
    checks = set(ends) | ({first} if 0 < first < num_warmup else set())
    adapt_mass = mass_matrix is not None and bool(ends)
    moments = None
    chains = state.potential.shape[0]
    dim = state.position[0].numel() if isinstance(state.position, Tensor) else 0
    since = torch.zeros_like(state.potential)
    count, restarted = 0, 0
    for i in range(num_warmup):
        h = da.step_size if adapt_step_size else step_size
        state, info = make_step(h, metric)(state, generator)
        stats.add(info)
        trace.append(h)
        since = since + info.acceptance_prob
        count += 1
        if adapt_step_size:
            da = da.update(float(info.acceptance_prob.mean()), target_accept)
        if adapt_mass and first <= i < ends[-1]:
            if moments is None:
                moments = Moments(chains, dim, mass_matrix == "dense", state.potential.device)
            moments.add(tree.ravel(state.position))
        if i + 1 not in checks:
            continue
        stuck = grouped_stuck_chains(since / count, state.potential, groups)
        since, count = torch.zeros_like(since), 0
        if adapt_mass and moments is not None and i + 1 in ends:
            keep = None if bool(stuck.all()) else ~stuck
            inv = moments.regularised(keep, None if groups is None else groups.index)
            inv = inv.to(state.potential.dtype)
            metric = (DenseMetric(inv) if mass_matrix == "dense"
                      else DiagonalMetric(inv.reshape(state.position.shape[1:])))
            moments = None
        moving = restartable(stuck, groups)
        if bool(moving.any()):
            state = restart(state, moving, generator, groups)
            restarted += int(moving.sum())
            if per_group is not None:
                per_group += torch.bincount(groups.index[moving], minlength=groups.num_groups)
        if adapt_step_size and i + 1 in ends:
            h = find_step_size(make_step, state, da.step_size, metric, generator, target_accept)
            da = DualAveraging.start(h)
    final = da.final_step_size if adapt_step_size else step_size
    return Adapted(state, final, metric, stats, trace, restarted, initial, counts())


def describe_metric(metric: Metric) -> Tensor | float:
    """The inverse mass a result reports: 1.0, the diagonal, or the dense matrix."""
    if isinstance(metric, IdentityMetric):
        return 1.0
    return metric.inverse_mass.detach().clone()
