"""Warm-up adaptation as in Stan: dual-averaging step size, windowed mass matrix.

:func:`window_adaptation` runs a kernel for ``num_warmup`` iterations over all chains:

* the step size follows Nesterov dual averaging (Hoffman & Gelman 2014, Stan's
  defaults ``gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 h)``) on the acceptance
  probability averaged over chains, towards ``target_accept``; the final step size is
  the averaged iterate;
* with ``mass_matrix="diag"`` or ``"dense"``, Stan's windows: a fast initial buffer
  (75 iterations), slow windows of 25, 50, 100, ... iterations (the last one stretched
  to the terminal buffer) and a fast terminal buffer (50); for fewer than 150 warm-up
  iterations the buffers are 15 % / 75 % / 10 %. At the end of each slow window the
  inverse mass matrix becomes the variance (or covariance) of the positions of **all
  chains** over the window, shrunk towards ``1e-3`` as Stan does
  (``n / (n + 5) * var + 1e-3 * 5 / (n + 5)``, ``n`` the number of draws), and the step
  size search and dual averaging restart.

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


class Moments:
    """Streaming mean and (co)variance of ``(B, D)`` draws in float64 (Chan's update)."""

    def __init__(self, dim: int, dense: bool, device: torch.device) -> None:
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros((dim, dim) if dense else (dim,), dtype=torch.float64, device=device)
        self.dense = dense

    def add(self, x: Tensor) -> None:
        x = x.to(torch.float64)
        nb = x.shape[0]
        mb = x.mean(0)
        c = x - mb
        m2b = c.T @ c if self.dense else (c * c).sum(0)
        delta = mb - self.mean
        n = self.n + nb
        corr = torch.outer(delta, delta) if self.dense else delta * delta
        self.m2 = self.m2 + m2b + corr * (self.n * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    def regularised(self) -> Tensor:
        """Stan's shrunk estimate ``n/(n+5) var + 1e-3 * 5/(n+5)`` (identity for dense)."""
        n = self.n
        var = self.m2 / max(n - 1, 1)
        shrink = 1e-3 * 5.0 / (n + 5.0)
        if self.dense:
            return (n / (n + 5.0)) * var + shrink * torch.eye(var.shape[0], dtype=var.dtype, device=var.device)
        return (n / (n + 5.0)) * var + shrink


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
    """

    state: State
    step_size: float
    metric: Metric
    stats: Stats
    step_size_trace: list[float]


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
    if num_warmup == 0:
        return Adapted(state, step_size, metric, stats, trace)
    if adapt_step_size:
        step_size = find_step_size(make_step, state, step_size, metric, generator, target_accept)
    da = DualAveraging.start(step_size)
    first, ends = windows(num_warmup) if mass_matrix is not None else (num_warmup, [])
    moments = None
    dim = state.position[0].numel() if isinstance(state.position, Tensor) else 0
    for i in range(num_warmup):
        h = da.step_size if adapt_step_size else step_size
        state, info = make_step(h, metric)(state, generator)
        stats.add(info)
        trace.append(h)
        if adapt_step_size:
            da = da.update(float(info.acceptance_prob.mean()), target_accept)
        if ends and i >= first and i < ends[-1]:
            if moments is None:
                moments = Moments(dim, mass_matrix == "dense", state.potential.device)
            moments.add(tree.ravel(state.position))
            if i + 1 in ends:
                inv = moments.regularised().to(state.potential.dtype)
                metric = (DenseMetric(inv) if mass_matrix == "dense"
                          else DiagonalMetric(inv.reshape(state.position.shape[1:])))
                moments = None
                if adapt_step_size:
                    h = find_step_size(make_step, state, da.step_size, metric, generator, target_accept)
                    da = DualAveraging.start(h)
    final = da.final_step_size if adapt_step_size else step_size
    return Adapted(state, final, metric, stats, trace)


def describe_metric(metric: Metric) -> Tensor | float:
    """The inverse mass a result reports: 1.0, the diagonal, or the dense matrix."""
    if isinstance(metric, IdentityMetric):
        return 1.0
    return metric.inverse_mass.detach().clone()
