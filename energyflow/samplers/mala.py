"""Metropolis-adjusted Langevin (MALA), exact for the density exp(-U(x, T) / T).

Proposal ``y = x - h Sigma grad U(x) + sqrt(2 T h) L xi`` (the Langevin step,
preconditioned by an inverse mass ``Sigma = L L^T``, the identity by default), accepted
per chain with the Metropolis-Hastings ratio. The state caches energy and gradient, so
a step costs one gradient evaluation.

With ``num_warmup > 0`` the run first adapts: the step size by dual averaging towards
``target_accept`` (0.574, the optimal MALA rate of Roberts & Rosenthal 1998) and, with
``mass_matrix="diag"`` or ``"dense"``, the preconditioner in Stan's windows from all
chains (see :mod:`energyflow.samplers.adaptation`). Then ``num_steps`` iterations
sample with the adapted kernel; the result's ``info`` holds the adapted ``step_size``
and ``inverse_mass``. A batch whose chains sample several targets (one per measurement,
say) passes ``run(..., chain_groups=...)``: warm-up's restarts and the mass matrix's
spread then stay within each group.

Chains are corrected independently, so fields with interaction terms are refused. On a
constrained space the proposal is the space's Gaussian (projected noise, projected
gradient), for which the correction is exact.

The pure kernel is :func:`kernel`; :class:`MALA` is the configured sampler.

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    >>> out = ef.MALA(step_size=0.5, num_steps=100).run(
    ...     field, torch.zeros(256, 2), generator=torch.Generator().manual_seed(0))
    >>> 0.5 < out.mean_acceptance < 1.0
    True
    >>> out = ef.MALA(num_warmup=200, num_steps=100).run(
    ...     field, torch.zeros(256, 2), generator=torch.Generator().manual_seed(0))
    >>> abs(out.mean_acceptance - 0.574) < 0.05
    True
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor

from energyflow import tree
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

__all__ = ["MALA", "Info", "State", "kernel"]


def kernel(
    state: State,
    potential: K.Potential,
    step_size: float,
    generator: torch.Generator | None,
    *,
    space: Space,
    metric: Metric | None = None,
) -> tuple[State, Info]:
    """One MALA step on every chain.

    Proposal ``y = x - eps Sigma grad phi(x) + sqrt(2 eps) L xi`` for the target
    ``exp(-phi)``, with the metric's ``Sigma = L L^T``, projected onto ``space``.

    Args:
        state (State): the chains (position, ``phi``, ``grad phi``).
        potential (Callable): ``x -> (phi, grad phi, aux)``.
        step_size (float): eps (> 0), in units of ``phi``.
        generator (torch.Generator | None): random stream.
        space (Space): the state space.
        metric (Metric | None): the preconditioner; the space's identity by default.

    Returns:
        tuple[State, Info]: the chains after the step and what happened.
    """
    metric = metric or IdentityMetric(space)
    eps = float(step_size)
    x, g = state.position, state.grad
    drift = metric.velocity(g)
    noise = metric.noise(x, generator)
    scale = math.sqrt(2.0 * eps)
    y = space.project(tree.map(lambda a, b, c: a - eps * b + scale * c, x, drift, noise))
    proposal = K.init(y, potential)
    # log q(y | x) = -(y - x + eps Sigma g_x)^T M (y - x + eps Sigma g_x) / (4 eps) + const
    fwd = tree.map(lambda a, b, c: a - b + eps * c, y, x, drift)
    bwd = tree.map(lambda a, b, c: a - b + eps * c, x, y, metric.velocity(proposal.grad))
    log_q_fwd = -metric.precision_sqnorm(fwd) / (4.0 * eps)
    log_q_bwd = -metric.precision_sqnorm(bwd) / (4.0 * eps)
    log_alpha = (state.potential - proposal.potential).to(log_q_fwd.dtype) + log_q_bwd - log_q_fwd
    return K.metropolis(state, proposal, log_alpha, generator, step_size=eps)


@attrs.frozen
class MALA:
    """Metropolis-adjusted Langevin, with optional warm-up adaptation.

    Args:
        step_size (float): h (> 0), in the units of the Langevin step (the kernel's eps is
            ``h * T``); the initial value when the step size adapts.
        num_steps (int): MH iterations after warm-up (>= 1).
        temperature (float): T (> 0); the target is exp(-U(x, T) / T).
        num_warmup (int): adaptation iterations before sampling (>= 0; 0: no adaptation).
        target_accept (float): acceptance probability the step size adapts to.
        adapt_step_size (bool): adapt the step size during warm-up.
        mass_matrix (str | None): ``"diag"`` or ``"dense"``: adapt a preconditioner during
            warm-up (Euclidean tensor states only); None keeps ``inverse_mass``.
        inverse_mass (Tensor | float): the (initial) preconditioner ``Sigma``: 1.0, a
            diagonal broadcastable to the event shape, or a ``(D, D)`` matrix for a flat
            event ``(D,)``.
        num_samples (int | None): keep draws (Stan's and NumPyro's meaning): run this many
            iterations after warm-up (it replaces ``num_steps``) and keep every ``thin``-th
            state and its sample stats in ``result.draws`` ``(chains, num_samples // thin,
            *event)`` and ``result.sample_stats``; memory is checked before sampling (see
            :mod:`energyflow.samplers.draws`). Such a run warns (Python warnings) of
            divergences after warm-up and of a collapsed step size. None keeps only the
            final states.
        thin (int): keep every ``thin``-th post-warm-up iteration (needs ``num_samples``).
    """

    step_size: float = attrs.field(default=0.01, converter=real(), validator=positive)
    num_steps: int = attrs.field(default=100, converter=integer(), validator=positive)
    temperature: float = attrs.field(default=1.0, converter=real(), validator=positive)
    num_warmup: int = attrs.field(default=0, converter=integer(), validator=attrs.validators.ge(0))
    target_accept: float = attrs.field(default=0.574, converter=real(), validator=attrs.validators.and_(
        attrs.validators.gt(0.0), attrs.validators.lt(1.0)))
    adapt_step_size: bool = attrs.field(default=True, converter=boolean())
    mass_matrix: str | None = attrs.field(default=None, validator=attrs.validators.optional(one_of("diag", "dense")))
    inverse_mass: Tensor | float = attrs.field(default=1.0)
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
        forbid_batch_coupling(field, "MALA")
        x, space = prepare(field, x0, T, generator)
        groups = ChainGroups.of(chain_groups, tree.first(x).shape[0], tree.first(x).device)
        evals0 = field.num_grad_evals
        potential = K.field_potential(field, T)
        state = K.init(x, potential)
        if not bool(torch.isfinite(state.potential).all() and tree.isfinite(state.grad).all()):
            raise FloatingPointError("MALA: the energy or its gradient is NaN/inf at the initial states")
        metric = make_metric(self.inverse_mass, space, x)

        def make_step(eps: float, metric: Metric):
            return lambda s, gen: kernel(s, potential, eps, gen, space=space, metric=metric)

        keep = DrawBuffer(x, self.num_samples, self.thin) if self.num_samples else None  # refused before sampling
        warm = window_adaptation(make_step, state, self.num_warmup, generator, space=space,
                                 step_size=self.step_size * T, metric=metric, target_accept=self.target_accept,
                                 adapt_step_size=self.adapt_step_size, mass_matrix=self.mass_matrix,
                                 groups=groups)
        evals_warm = field.num_grad_evals - evals0
        rec = Recorder(self.num_steps, warm.state.position, record_every)
        state, stats = K.sample(make_step(warm.step_size, warm.metric), warm.state, self.num_steps, generator,
                                recorder=rec, scale=T, keep=keep)
        info = {"temperature": T, "step_size": warm.step_size / T, "inverse_mass": describe_metric(warm.metric),
                "num_warmup": self.num_warmup, "num_grad_evals_warmup": evals_warm,
                "accept_fraction": stats.accepted / max(stats.iterations, 1),
                "num_transitions": self.num_steps * state.potential.shape[0]}
        if self.num_warmup:
            info["warmup_acceptance"] = float(warm.stats.mean_acceptance().mean())
            info["num_restarted"] = warm.num_restarted
            if warm.restarted_per_group is not None:
                info["num_restarted_per_group"] = warm.restarted_per_group
            info["warmup_step_sizes"] = [h / T for h in warm.step_size_trace]
            if warm.initial_step_size is not None:
                info["step_size_initial"] = warm.initial_step_size / T
        out = K.result(state, stats, rec, temperature=T, num_grad_evals=field.num_grad_evals - evals0, info=info,
                       keep=keep, step_scale=T, model=find_model(field))
        if keep is not None:
            warn_transitions(out, "MALA")
        return out
