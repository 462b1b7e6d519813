"""Hamiltonian Monte Carlo with a leapfrog integrator, exact for exp(-U(x, T) / T).

Each chain draws a momentum ``p ~ N(0, M)``, takes leapfrog steps of
``H(x, p) = U(x, T)/T + p^T M^-1 p / 2`` and is accepted on its own. The number of
leapfrog steps is jittered per iteration (uniform on ``num_leapfrog * (1 +/- jitter)``,
the same for all chains, so the batch stays one computation) to avoid the periodic
trajectories a fixed length produces on near-Gaussian targets. The state caches the
gradient, so an iteration costs one gradient evaluation per leapfrog step. A transition
whose energy error exceeds ``max_energy_error`` (or is NaN, or whose evaluation raised)
is divergent: it is rejected and counted.

With ``num_warmup > 0`` the run first adapts the step size (dual averaging towards
``target_accept = 0.8``, Stan's default) and, with ``mass_matrix="diag"`` or
``"dense"``, the mass matrix in Stan's windows from all chains (see
:mod:`energyflow.samplers.adaptation`); then ``num_steps`` iterations sample with the
adapted kernel. The result's ``info`` holds the adapted ``step_size`` and
``inverse_mass``. A batch whose chains sample several targets (one per measurement,
say) passes ``run(..., chain_groups=...)``: warm-up's restarts and the mass matrix's
spread then stay within each group.

The pure kernel is :func:`kernel`; :class:`HMC` is the configured sampler.

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(3), torch.eye(3)))
    >>> out = ef.HMC(step_size=0.3, num_leapfrog=5, num_steps=50).run(
    ...     field, torch.zeros(128, 3), generator=torch.Generator().manual_seed(0))
    >>> out.samples.shape, out.num_divergences
    (torch.Size([128, 3]), 0)
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.field import Field
from energyflow.samplers import kernel as K
from energyflow.samplers._config import one_of, positive, resolve_draws
from energyflow.samplers.adaptation import ChainGroups, describe_metric, window_adaptation
from energyflow.samplers.base import Recorder, SampleResult, find_model, forbid_batch_coupling, prepare
from energyflow.samplers.draws import DrawBuffer
from energyflow.diagnostics import warn_transitions
from energyflow.samplers.kernel import Info, State
from energyflow.samplers.metric import IdentityMetric, Metric, make_metric
from energyflow.spaces import Space
from energyflow.validation import boolean, integer, real

__all__ = ["HMC", "Info", "State", "kernel", "leapfrog_count"]


def kernel(
    state: State,
    potential: K.Potential,
    step_size: float,
    num_integration_steps: int | Tensor,
    generator: torch.Generator | None,
    *,
    space: Space,
    metric: Metric | None = None,
    max_energy_error: float = 1000.0,
) -> tuple[State, Info]:
    """One HMC transition on every chain: fresh momentum, leapfrog, Metropolis.

    Args:
        state (State): the chains (position, ``phi``, ``grad phi``).
        potential (Callable): ``x -> (phi, grad phi, aux)``; the target is ``exp(-phi)``.
        step_size (float): leapfrog step (> 0).
        num_integration_steps (int | Tensor): leapfrog steps (>= 1), or one count per
            chain ``(B,)`` (the batch then runs the largest count and each chain stops at
            its own, which costs the largest count in gradient evaluations).
        generator (torch.Generator | None): random stream.
        space (Space): the state space (positions are projected after every step).
        metric (Metric | None): the mass matrix; the space's identity by default.
        max_energy_error (float): energy error above which the transition is divergent.

    Returns:
        tuple[State, Info]: the chains after the transition and what happened; the info's
        energy is the Hamiltonian.
    """
    metric = metric or IdentityMetric(space)
    h = float(step_size)
    per_chain = isinstance(num_integration_steps, Tensor)
    total = int(num_integration_steps.max()) if per_chain else int(num_integration_steps)
    x = state.position
    p = metric.momentum(x, generator)
    h0 = state.potential + metric.kinetic(p)
    prop, pn = state, p
    broken = torch.zeros(state.potential.shape[0], dtype=torch.bool, device=state.potential.device)
    for i in range(total):
        # p(t + h/2) = p(t) - h/2 grad; x(t + h) = x(t) + h Sigma p(t + h/2); p(t + h) = p(t + h/2) - h/2 grad.
        half = tree.map(lambda a, b: a - 0.5 * h * b, pn, prop.grad)
        xn = space.project(tree.map(lambda a, v: a + h * v, prop.position, metric.velocity(half)))
        # A chain whose evaluation failed waits at its start (it is rejected anyway); no host sync.
        xn = tree.where(broken, x, xn)
        new = K.init(xn, potential)
        broken = broken | ~torch.isfinite(new.potential)
        p_new = tree.map(lambda a, b: a - 0.5 * h * b, half, new.grad)
        if per_chain:  # chains past their own count keep their end point
            moving = num_integration_steps > i
            new = K.State(tree.where(moving, new.position, prop.position), torch.where(moving, new.potential,
                          prop.potential), tree.where(moving, new.grad, prop.grad),
                          {k: tree.where(moving, v, prop.aux[k]) for k, v in new.aux.items()})
            p_new = tree.where(moving, p_new, pn)
        prop, pn = new, p_new
    h1 = prop.potential + metric.kinetic(pn)
    delta = torch.where(broken, torch.full_like(h1, float("inf")), h1 - h0)
    divergent = ~torch.isfinite(delta) | (delta > max_energy_error)
    return K.metropolis(state, prop, -delta, generator, step_size=h, divergent=divergent, energy=(h0, h1),
                        num_integration_steps=total, steps_per_chain=num_integration_steps if per_chain else None)


def leapfrog_count(num_leapfrog: int, jitter: float, generator: torch.Generator | None,
                   num_chains: int | None = None) -> int | Tensor:
    """Leapfrog counts uniform on ``[round(L (1 - j)), round(L (1 + j))]`` (at least 1):
    one for the batch, or ``(num_chains,)`` of them."""
    if jitter == 0.0:
        return num_leapfrog
    lo = max(1, round(num_leapfrog * (1.0 - jitter)))
    hi = max(lo, round(num_leapfrog * (1.0 + jitter)))
    device = generator.device if generator is not None else "cpu"
    draw = torch.randint(lo, hi + 1, (num_chains or 1,), generator=generator, device=device)
    return int(draw) if num_chains is None else draw


def _jitter(instance, attribute, value) -> None:
    if not 0.0 <= value < 1.0:
        raise InvalidValueError(f"HMC.{attribute.name} must lie in [0, 1), got {value}")


@attrs.frozen
class HMC:
    """Hamiltonian Monte Carlo, with optional warm-up adaptation.

    Args:
        step_size (float): leapfrog step (> 0); the initial value when it adapts.
        num_leapfrog (int): mean leapfrog steps per iteration (>= 1).
        num_steps (int): iterations after warm-up (>= 1).
        temperature (float): T (> 0); the target is exp(-U(x, T) / T).
        inverse_mass (Tensor | float): the (initial) ``M^-1``: 1.0, a diagonal
            broadcastable to the event shape, or a ``(D, D)`` matrix for a flat event
            ``(D,)``.
        max_energy_error (float): energy error above which a transition is divergent.
        jitter (float): leapfrog counts are uniform on ``num_leapfrog * (1 +/- jitter)``
            (0 keeps exactly ``num_leapfrog``).
        num_warmup (int): adaptation iterations before sampling (>= 0; 0: no adaptation).
        target_accept (float): acceptance probability the step size adapts to.
        adapt_step_size (bool): adapt the step size during warm-up.
        mass_matrix (str | None): ``"diag"`` or ``"dense"``: adapt the mass matrix during
            warm-up (Euclidean tensor states only); None keeps ``inverse_mass``.
        num_samples (int | None): keep draws (Stan's and NumPyro's meaning): run this many
            iterations after warm-up (it replaces ``num_steps``) and keep every ``thin``-th
            state and its sample stats in ``result.draws`` ``(chains, num_samples // thin,
            *event)`` and ``result.sample_stats``; memory is checked before sampling (see
            :mod:`energyflow.samplers.draws`). Such a run warns (Python warnings) of
            divergences after warm-up and of a collapsed step size. None keeps only the
            final states.
        thin (int): keep every ``thin``-th post-warm-up iteration (needs ``num_samples``).
    """

    step_size: float = attrs.field(default=0.1, converter=real(), validator=positive)
    num_leapfrog: int = attrs.field(default=10, converter=integer(), validator=positive)
    num_steps: int = attrs.field(default=100, converter=integer(), validator=positive)
    temperature: float = attrs.field(default=1.0, converter=real(), validator=positive)
    inverse_mass: Tensor | float = attrs.field(default=1.0)
    max_energy_error: float = attrs.field(default=1000.0, converter=real(), validator=positive)
    jitter: float = attrs.field(default=0.2, converter=real(), validator=_jitter)
    jitter_per_chain: bool = attrs.field(default=True, converter=boolean())
    num_warmup: int = attrs.field(default=0, converter=integer(), validator=attrs.validators.ge(0))
    target_accept: float = attrs.field(default=0.8, converter=real(), validator=attrs.validators.and_(
        attrs.validators.gt(0.0), attrs.validators.lt(1.0)))
    adapt_step_size: bool = attrs.field(default=True, converter=boolean())
    mass_matrix: str | None = attrs.field(default=None, validator=attrs.validators.optional(one_of("diag", "dense")))
    num_samples: int | None = attrs.field(default=None, converter=integer(optional=True), validator=positive)
    thin: int = attrs.field(default=1, converter=integer(), validator=positive)

    def __attrs_post_init__(self) -> None:
        resolve_draws(self)

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
        chain_groups: Tensor | None = None,
    ) -> SampleResult:
        """Warms up for ``num_warmup`` iterations, then runs ``num_steps`` from ``x0`` ``(B, *event)``.

        Args:
            field (Field): the compiled field.
            x0 (Tensor): the initial states, ``(B, *event)``.
            generator (torch.Generator | None): the random stream.
            record_every (int | None): keep every ``record_every``-th state in the trajectory.
            chain_groups (Tensor | None): integer ``(B,)``: chains with equal labels sample
                one target, chains with different labels different ones (e.g. the chains
                of N measurements of an inverse problem, ``arange(N).repeat_interleave(K)``).
                Warm-up then judges and restarts stuck chains within their group only (see
                :mod:`energyflow.samplers.adaptation`), and ``info["num_restarted_per_group"]``
                maps each label to its restarts. The step size (and mass matrix) stay one
                for the batch; the mass matrix is the within-group (co)variance. None (the
                default): all chains share one target.
        """
        T = self.temperature
        forbid_batch_coupling(field, "HMC")
        x, space = prepare(field, x0, T, generator)
        groups = ChainGroups.of(chain_groups, tree.first(x).shape[0], tree.first(x).device)
        metric = make_metric(self.inverse_mass, space, x)
        evals0 = field.num_grad_evals
        potential = K.field_potential(field, T)
        state = K.init(x, potential)
        if not bool(torch.isfinite(state.potential).all() and tree.isfinite(state.grad).all()):
            raise FloatingPointError("HMC: the energy or its gradient is NaN/inf at the initial states")

        def make_step(h: float, metric: Metric):
            def step(s: State, gen: torch.Generator | None) -> tuple[State, Info]:
                n = leapfrog_count(self.num_leapfrog, self.jitter, gen,
                                   s.potential.shape[0] if self.jitter_per_chain else None)
                return kernel(s, potential, h, n, gen, space=space, metric=metric,
                              max_energy_error=self.max_energy_error)
            return step

        keep = DrawBuffer(x, self.num_samples, self.thin) if self.num_samples else None  # refused before sampling
        warm = window_adaptation(make_step, state, self.num_warmup, generator, space=space,
                                 step_size=self.step_size, metric=metric, target_accept=self.target_accept,
                                 adapt_step_size=self.adapt_step_size, mass_matrix=self.mass_matrix,
                                 groups=groups)
        evals_warm = field.num_grad_evals - evals0
        rec = Recorder(self.num_steps, warm.state.position, record_every)
        state, stats = K.sample(make_step(warm.step_size, warm.metric), warm.state, self.num_steps, generator,
                                recorder=rec, scale=T, keep=keep)
        info = {"temperature": T, "step_size": warm.step_size, "num_leapfrog": self.num_leapfrog,
                "inverse_mass": describe_metric(warm.metric), "num_warmup": self.num_warmup,
                "num_grad_evals_warmup": evals_warm, "num_integration_steps": stats.integration_steps,
                "accept_fraction": stats.accepted / max(stats.iterations, 1),
                "num_transitions": self.num_steps * state.potential.shape[0]}
        if self.num_warmup:
            info["warmup_acceptance"] = float(warm.stats.mean_acceptance().mean())
            info["num_restarted"] = warm.num_restarted
            if warm.restarted_per_group is not None:
                info["num_restarted_per_group"] = warm.restarted_per_group
            info["warmup_step_sizes"] = list(warm.step_size_trace)
            if warm.initial_step_size is not None:
                info["step_size_initial"] = warm.initial_step_size
        out = K.result(state, stats, rec, temperature=T, num_grad_evals=field.num_grad_evals - evals0, info=info,
                       keep=keep, model=find_model(field))
        if keep is not None:
            warn_transitions(out, "HMC")
        return out
