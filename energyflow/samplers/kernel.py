"""Metropolis kernels in BlackJAX's shape: a cached state, a pure step, one driver loop.

A kernel is a function ``kernel(state, potential, step_size, ..., generator) -> (state,
info)`` over a batch of independent chains. ``potential(x) -> (phi, grad, aux)`` is the
negative log-density ``phi = -log pi(x)`` per chain ``(B,)``, its gradient (shaped like
the state) and a dict of per-chain extras carried along with the position (empty unless
a caller needs them; annealed importance sampling keeps its two log-densities there).
:class:`State` caches ``phi`` and its gradient so a kernel step evaluates only its
proposal; :func:`metropolis` is the one accept/reject step every kernel ends with
(MALA, HMC and the AIS transitions of :func:`energyflow.likelihood.log_partition`).

:func:`sample` is the driver: it runs any kernel for a number of iterations, recording
traces and summing per-chain statistics, and :func:`result` turns it into a
:class:`~energyflow.samplers.base.SampleResult`.

Example:
    >>> import torch, energyflow as ef
    >>> from energyflow.samplers import kernel as K, mala
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    >>> potential = K.field_potential(field, temperature=1.0)
    >>> state = K.init(torch.zeros(64, 2), potential)
    >>> g = torch.Generator().manual_seed(0)
    >>> state, info = mala.kernel(state, potential, 0.5, g, space=ef.Euclidean(2))
    >>> state.position.shape, info.acceptance_prob.shape, info.is_divergent.any().item()
    (torch.Size([64, 2]), torch.Size([64]), False)
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.field import Field
from energyflow.samplers.base import Recorder, SampleResult, energy_and_grad_or_reject
from energyflow.samplers.draws import DrawBuffer
from energyflow.tree import State as Position

Potential = Callable[[Position], "tuple[Tensor, Position, dict[str, Tensor]]"]


@attrs.frozen(eq=False)
class State:
    """A batch of chains with the cached negative log-density and its gradient.

    Attributes:
        position (Tensor | dict): the states, ``(B, *event)`` or a batch-first pytree.
        potential (Tensor): ``phi = -log pi(position)`` up to a constant, ``(B,)``.
        grad (Tensor | dict): ``grad phi``, shaped like ``position``.
        aux (dict[str, Tensor]): per-chain extras the potential returned, ``(B, ...)`` each.
    """

    position: Position
    potential: Tensor
    grad: Position
    aux: dict = attrs.field(factory=dict)


@attrs.frozen(eq=False)
class Info:
    """What one kernel step did, per chain.

    Attributes:
        acceptance_prob (Tensor): Metropolis acceptance probability ``min(1, alpha)``, ``(B,)``.
        is_accepted (Tensor): bool ``(B,)``.
        is_divergent (Tensor): bool ``(B,)``: the proposal's log-density (or HMC's
            energy error) was NaN/inf, its evaluation raised, or the energy error
            exceeded the kernel's bound; such proposals are always rejected.
        energy (Tensor): after the step, ``(B,)``: ``phi`` for MALA, the Hamiltonian
            ``phi + kinetic`` for HMC (what Stan and ArviZ call ``energy``).
        step_size (float): the step size used.
        num_integration_steps (int): leapfrog steps the batch ran (1 for MALA).
        steps_per_chain (Tensor | None): leapfrog steps of each chain's own trajectory,
            ``(B,)`` int, where they differ between chains (HMC's per-chain jitter).
    """

    acceptance_prob: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    energy: Tensor
    step_size: float
    num_integration_steps: int = 1
    steps_per_chain: Tensor | None = None


def field_potential(field: Field, temperature: float) -> Potential:
    """``phi = U(x, T) / T`` of a compiled field: the target ``exp(-U(x, T) / T)``.

    A proposal whose evaluation raises a numerical error gets ``phi = +inf`` (see
    :func:`~energyflow.samplers.base.reject_failures`), so kernels reject it.
    """
    T = float(temperature)

    def potential(x: Position) -> tuple[Tensor, Position, dict]:
        e, g, _ = energy_and_grad_or_reject(field, x, T)
        return e / T, tree.map(lambda v: v / T, g), {}

    return potential


def init(position: Position, potential: Potential) -> State:
    """The kernel state at ``position`` (one evaluation of ``potential``)."""
    phi, grad, aux = potential(position)
    return State(position, phi, grad, aux)


def uniform_log(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``log U(0, 1)`` draws, ``(n,)``, in ``like``'s dtype on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    u = torch.rand((n,), generator=generator, dtype=like.dtype, device=device)
    return torch.log(u.to(like.device))


def metropolis(
    state: State,
    proposal: State,
    log_alpha: Tensor,
    generator: torch.Generator | None,
    *,
    step_size: float,
    divergent: Tensor | None = None,
    energy: tuple[Tensor, Tensor] | None = None,
    num_integration_steps: int = 1,
    steps_per_chain: Tensor | None = None,
) -> tuple[State, Info]:
    """Accepts each chain's proposal with probability ``min(1, exp(log_alpha))``.

    A non-finite ``log_alpha`` (or ``divergent``) rejects the proposal and marks the
    step divergent.

    Args:
        state (State): current chains.
        proposal (State): proposed chains (evaluated).
        log_alpha (Tensor): log Metropolis-Hastings ratio, ``(B,)``.
        generator (torch.Generator | None): source of the uniforms.
        step_size (float): reported in the info.
        divergent (Tensor | None): bool ``(B,)`` of proposals to reject as divergent.
        energy (tuple[Tensor, Tensor] | None): the info's energy at the current state and
            at the proposal; ``phi`` by default.
        num_integration_steps (int): reported in the info.
        steps_per_chain (Tensor | None): reported in the info, ``(B,)``.

    Returns:
        tuple[State, Info]: the chains after the step and what happened.
    """
    bad = ~torch.isfinite(log_alpha)
    if divergent is not None:
        bad = bad | divergent
    log_alpha = torch.where(bad, torch.full_like(log_alpha, -math.inf), log_alpha)
    accept = uniform_log(log_alpha.shape[0], log_alpha, generator) < log_alpha
    prob = torch.exp(log_alpha.clamp(max=0.0))
    new = State(
        position=tree.where(accept, proposal.position, state.position),
        potential=torch.where(accept, proposal.potential, state.potential),
        grad=tree.where(accept, proposal.grad, state.grad),
        aux={k: tree.where(accept, proposal.aux[k], v) for k, v in state.aux.items()},
    )
    e_now, e_prop = energy if energy is not None else (state.potential, proposal.potential)
    info = Info(
        acceptance_prob=prob,
        is_accepted=accept,
        is_divergent=bad,
        energy=torch.where(accept, e_prop, e_now),
        step_size=float(step_size),
        num_integration_steps=int(num_integration_steps),
        steps_per_chain=steps_per_chain,
    )
    return new, info


Step = Callable[[State, "torch.Generator | None"], "tuple[State, Info]"]


@attrs.define
class Stats:
    """Per-chain sums over the iterations of a run (no host syncs until read).

    Attributes:
        iterations (int): iterations run.
        acceptance_prob (Tensor): summed acceptance probability ``(B,)``.
        accepted (Tensor): summed acceptances ``(B,)``.
        divergent (Tensor): summed divergences ``(B,)``.
        integration_steps (int): summed leapfrog steps.
    """

    iterations: int
    acceptance_prob: Tensor
    accepted: Tensor
    divergent: Tensor
    integration_steps: int = 0

    @classmethod
    def zeros(cls, like: Tensor) -> "Stats":
        n = like.shape[0]
        z = torch.zeros(n, dtype=like.dtype, device=like.device)
        return cls(0, z, z.clone(), torch.zeros(n, dtype=torch.long, device=like.device))

    def add(self, info: Info) -> None:
        self.iterations += 1
        self.acceptance_prob = self.acceptance_prob + info.acceptance_prob.to(self.acceptance_prob.dtype)
        self.accepted = self.accepted + info.is_accepted.to(self.accepted.dtype)
        self.divergent = self.divergent + info.is_divergent.to(torch.long)
        self.integration_steps += info.num_integration_steps

    def mean_acceptance(self) -> Tensor:
        """Mean acceptance probability per chain, ``(B,)``."""
        return self.acceptance_prob / max(self.iterations, 1)


def sample(
    step: Step,
    state: State,
    num_steps: int,
    generator: torch.Generator | None,
    *,
    recorder: Recorder | None = None,
    scale: float = 1.0,
    keep: DrawBuffer | None = None,
) -> tuple[State, Stats]:
    """Runs ``step`` ``num_steps`` times from ``state``.

    Args:
        step (Callable): ``step(state, generator) -> (state, info)``, a kernel with its
            parameters bound.
        state (State): the chains to start from.
        num_steps (int): iterations.
        generator (torch.Generator | None): the random stream.
        recorder (Recorder | None): records ``scale * phi`` and ``scale * |grad|`` (the
            field's energy and gradient when ``scale`` is the temperature) and the
            trajectory.
        scale (float): multiplier from ``phi`` back to the recorded energy.
        keep (DrawBuffer | None): keeps every ``thin``-th state and its sample stats.

    Returns:
        tuple[State, Stats]: the final chains and the per-chain sums.
    """
    stats = Stats.zeros(state.potential)
    for k in range(num_steps):
        state, info = step(state, generator)
        stats.add(info)
        if recorder is not None:
            recorder.step(k, scale * state.potential, tree.map(lambda v: scale * v, state.grad), state.position)
        if keep is not None:
            keep.add(k, state.position, state.potential, info)
    return state, stats


def result(
    state: State,
    stats: Stats,
    recorder: Recorder,
    *,
    temperature: float,
    num_grad_evals: int,
    info: dict,
    keep: DrawBuffer | None = None,
    step_scale: float = 1.0,
    model=None,
) -> SampleResult:
    """The :class:`SampleResult` of a Metropolis run (energies are ``T * phi``).

    With ``keep``, the result holds its draws and sample stats (step sizes divided by
    ``step_scale``, the kernel's units over the sampler's) and ``model``, the
    ``ef.model`` term of the field (for :meth:`SampleResult.to_arviz`).
    """
    extra = {} if keep is None else {"draws": keep.draws(), "sample_stats": keep.sample_stats(step_scale),
                                     "model": model}
    return SampleResult(
        samples=state.position,
        energy=temperature * state.potential,
        energy_trace=recorder.energy,
        grad_norm_trace=recorder.grad_norm,
        trajectory=recorder.trajectory(),
        acceptance_rate=stats.mean_acceptance(),
        num_divergences=int(stats.divergent.sum()),
        num_grad_evals=num_grad_evals,
        info=info,
        **extra,
    )
