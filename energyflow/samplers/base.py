"""What every sampler shares: the result type, divergence errors, state preparation.

Every sampler is a frozen attrs config with a ``run(field, x0, generator=...)`` method
returning a :class:`SampleResult`. Samplers never print.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.errors import EnergyflowError, InvalidTypeError, InvalidValueError
from energyflow.field import Field, FieldError, default_space
from energyflow.spaces import Space
from energyflow.tree import State


class DivergenceError(EnergyflowError, FloatingPointError):
    """A chain became non-finite; the message names the step and the term at fault.

    Attributes:
        step (int): index of the step at which it happened.
        terms (list[str]): names of the terms that are non-finite at the last finite state.
        last_finite (Tensor | None): the last states that were finite, ``(B, *event)``.
    """

    def __init__(self, message: str, step: int, terms: list[str], last_finite: Tensor | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.terms = terms
        self.last_finite = last_finite


@attrs.frozen(eq=False)
class SampleResult:
    """Samples plus diagnostics.

    Attributes:
        samples (Tensor): final states, ``(B, *event)``.
        energy (Tensor): ``U(samples, eps)`` at the final temperature, ``(B,)``.
        energy_trace (Tensor): mean energy over chains at every step, ``(num_steps,)``.
        grad_norm_trace (Tensor): mean gradient norm over chains at every step, ``(num_steps,)``.
        trajectory (Tensor | None): recorded states ``(T, B, *event)`` if asked for.
        acceptance_rate (Tensor | None): per-chain acceptance rate ``(B,)`` (MH samplers).
        num_divergences (int): divergent transitions (rejected) in MH samplers.
        num_grad_evals (int): gradient evaluations the run cost (per chain batch).
        info (dict): sampler-specific extras (times, temperatures, step sizes).
        draws (Tensor | dict | None): the kept post-warm-up states, ``(chains, draws,
            *event)`` per leaf (runs with ``num_samples``; see
            :mod:`energyflow.samplers.draws`), in the sampler's (unconstrained) coordinates.
        sample_stats (dict[str, Tensor]): per-draw statistics under ArviZ's names
            (``acceptance_rate``, ``diverging``, ``energy``, ``lp``, ``step_size``,
            ``n_steps``; ``tree_depth`` for NUTS), ``(chains, draws)`` each.
        model (Model | None): the ``ef.model`` term of the field that was sampled, if any:
            :meth:`to_arviz` reports its constrained sites and observed data.
    """

    samples: Tensor
    energy: Tensor
    energy_trace: Tensor
    grad_norm_trace: Tensor
    trajectory: Tensor | None = None
    acceptance_rate: Tensor | None = None
    num_divergences: int = 0
    num_grad_evals: int = 0
    info: dict = attrs.field(factory=dict)
    draws: Tensor | dict | None = None
    sample_stats: dict = attrs.field(factory=dict)
    model: Any = None

    @property
    def mean_acceptance(self) -> float | None:
        """Acceptance rate averaged over chains, or None for unadjusted samplers."""
        return None if self.acceptance_rate is None else float(self.acceptance_rate.mean())

    def to_arviz(self, **kwargs: Any):
        """The kept draws as an ArviZ ``InferenceData`` (see :func:`energyflow.diagnostics.to_arviz`)."""
        from energyflow.diagnostics import to_arviz

        return to_arviz(self, **kwargs)

    def summary(self, **kwargs: Any):
        """ArviZ's summary table of the kept draws, a pandas ``DataFrame``: mean, sd, HDI,
        MCSE, bulk and tail ESS, R-hat (see :func:`energyflow.diagnostics.summary`)."""
        from energyflow.diagnostics import summary

        return summary(self, **kwargs)


@runtime_checkable
class Sampler(Protocol):
    """The sampler interface."""

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult: ...


def find_model(field: Field) -> Any:
    """The ``ef.model`` term of a compiled field (its first), or None."""
    from energyflow.energies.model import Model

    return next((leaf for _, leaf in field.expr.leaves() if isinstance(leaf, Model)), None)


def check_generator(generator: object, x0: State) -> None:
    """A sampler's ``generator`` is None or a ``torch.Generator`` on the device of ``x0``."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise InvalidTypeError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed({generator!r})) or None, "
            f"got {type(generator).__name__}"
        )
    if isinstance(x0, Tensor):
        lead = x0
    elif isinstance(x0, dict):  # a pytree state: its first tensor leaf
        lead = next((v for v in x0.values() if isinstance(v, Tensor)), None)
    else:
        lead = None
    if lead is not None and generator.device.type != lead.device.type:
        raise InvalidValueError(
            f"the generator is on {generator.device} but the states are on {lead.device}; "
            f"use torch.Generator(device={str(lead.device)!r})"
        )


def prepare(field: Field, x0: State, eps: float = 1.0, generator: torch.Generator | None = None) -> tuple[State, Space]:
    """Checks the field, the generator and ``x0``; returns the projected start and the space.

    ``x0`` is a ``(B, *event)`` tensor or a batch-first pytree (a dict of tensors).

    Raises:
        InvalidTypeError: ``field`` is not compiled, or ``generator`` is not a Generator.
        FieldError: ``x0`` is not a non-empty ``(B, *event)`` float tensor the terms accept.
    """
    if not isinstance(field, Field):
        raise InvalidTypeError(
            f"samplers take a compiled field (energyflow.compile(expr)), got {type(field).__name__}"
        )
    check_generator(generator, x0)
    field.check(x0, eps)
    space = field.space if field.space is not None else default_space(x0)
    return space.project(tree.detach(x0)), space


# What a numerically failed evaluation raises: a Cholesky that fails (LinAlgError is a
# RuntimeError), a distribution whose argument validation sees NaN (ValueError), overflow.
NUMERICAL_ERRORS = (ValueError, RuntimeError, ArithmeticError)


def energy_and_grad_or_reject(field: Field, x: State, eps: float) -> tuple[Tensor, State, Tensor]:
    """``field.energy_and_grad(x, eps)`` for Metropolis proposals, surviving failed chains.

    See :func:`reject_failures`; returns energies ``(B,)``, gradients like ``x`` and a
    ``(B,)`` bool mask of the states whose evaluation raised.
    """
    return reject_failures(lambda y: field.energy_and_grad(y, eps), x)


def reject_failures(fn: Callable[[State], tuple[Tensor, State]], x: State) -> tuple[Tensor, State, Tensor]:
    """``fn(x) -> (energies (B,), gradients like x)``, surviving states on which it raises.

    When the batch's evaluation raises a numerical error, the batch is bisected to find
    the states that raise alone; those get energy ``+inf`` and gradient 0, so their
    proposals are rejected (and counted as divergent) while the other chains go on.
    Valid only for energies that treat chains independently (see
    :func:`forbid_batch_coupling`).

    Returns:
        tuple: energies ``(B,)``, gradients like ``x`` and a ``(B,)`` bool mask of the
        states whose evaluation raised.

    Raises:
        EnergyflowError: a user error (never mistaken for a numerical failure).
        Exception: the original error when every state raises on its own: the energy is
            broken, not a proposal.
    """
    lead = tree.first(x)
    n = lead.shape[0]
    try:
        e, g = fn(x)
        return e, g, torch.zeros(n, dtype=torch.bool, device=lead.device)
    except NUMERICAL_ERRORS as err:
        if isinstance(err, EnergyflowError):
            raise
        first = err
    e = torch.full((n,), float("inf"), dtype=lead.dtype, device=lead.device)
    g = tree.zeros_like(x)
    failed = torch.zeros(n, dtype=torch.bool, device=lead.device)

    def evaluate(idx: Tensor) -> None:
        try:
            e_i, g_i = fn(tree.index(x, idx))
            e[idx] = e_i.to(e.dtype)
            tree.set_index(g, idx, g_i)
        except NUMERICAL_ERRORS as err:
            if isinstance(err, EnergyflowError):
                raise
            if idx.numel() == 1:
                failed[idx] = True
            else:
                bisect(idx)

    def bisect(idx: Tensor) -> None:  # the whole of idx raised: evaluate its halves
        half = idx.numel() // 2
        evaluate(idx[:half])
        evaluate(idx[half:])

    if n > 1:
        bisect(torch.arange(n, device=lead.device))
    if n == 1 or bool(failed.all()):
        raise first
    return e, g, failed


def forbid_batch_coupling(field: Field, sampler: str) -> None:
    """Per-chain Metropolis corrections assume chains are independent."""
    coupled = [leaf.name for _, leaf in field.expr.leaves() if leaf.couples_batch]
    if coupled:
        raise FieldError(
            f"{sampler} accepts or rejects each chain on its own, which is wrong when an interaction "
            f"term couples the chains ({', '.join(coupled)}); sample it with Langevin instead"
        )


def raise_divergence(
    sampler: str, field: Field, step: int, x_prev: Tensor, eps: float, hint: str, first_step: int | None = None
) -> None:
    """Raises :class:`DivergenceError` with the non-finite terms at the last finite state."""
    terms = field.nonfinite_terms(x_prev, eps) if bool(tree.isfinite(x_prev).all()) else []
    where = f"terms non-finite at the last state: {', '.join(terms)}" if terms else (
        "every term was finite at the last state, so the step itself overshot"
    )
    when = f"at step {step}" if first_step is None or first_step == step else f"between steps {first_step} and {step}"
    raise DivergenceError(
        f"{sampler} diverged {when} (eps={eps:g}): the state became NaN/inf; {where}. {hint}",
        step,
        terms,
        x_prev,
    )


class Recorder:
    """Keeps the per-step traces and an optional trajectory without host syncs.

    States may be tensors or pytrees; gradient norms are over all coordinates (the
    metric of the spaces, which inherit the ambient one).
    """

    def __init__(self, num_steps: int, x0: State, record_every: int | None) -> None:
        if record_every is not None and record_every <= 0:
            raise InvalidValueError(f"record_every must be a positive integer, got {record_every}")
        lead = tree.first(x0)
        self.energy = torch.empty(num_steps, device=lead.device, dtype=lead.dtype)
        self.grad_norm = torch.empty(num_steps, device=lead.device, dtype=lead.dtype)
        self.every = record_every
        self.frames: list[State] = [tree.clone(x0)] if record_every else []

    def step(self, k: int, e: Tensor, g: State, x: State | None = None) -> None:
        """Records step ``k``'s mean energy and gradient norm (and ``x`` on the grid)."""
        self.energy[k] = e.mean()
        flat = g.reshape(g.shape[0], -1) if isinstance(g, Tensor) else tree.ravel(g)
        self.grad_norm[k] = torch.linalg.vector_norm(flat, dim=1).mean()
        if x is not None:
            self.frame(k, x)

    def frame(self, k: int, x: State) -> None:
        """Keeps ``x`` (the state after step ``k``) if it falls on the recording grid."""
        if self.every and (k + 1) % self.every == 0:
            self.frames.append(tree.clone(x))

    def trajectory(self) -> State | None:
        """Recorded states stacked on a new leading axis, ``(T, B, ...)`` per leaf."""
        if not self.frames:
            return None
        if isinstance(self.frames[0], Tensor):
            return torch.stack(self.frames)
        import torch.utils._pytree as pytree

        flat = [pytree.tree_flatten(f)[0] for f in self.frames]
        spec = pytree.tree_flatten(self.frames[0])[1]
        return pytree.tree_unflatten([torch.stack([f[i] for f in flat]) for i in range(len(flat[0]))], spec)
