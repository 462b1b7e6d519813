"""Metropolis-adjusted Langevin (MALA), exact for the density exp(-U(x, T) / T).

Proposal ``y = x - h grad U(x) + sqrt(2 T h) xi`` (the Langevin step), accepted per
chain with the Metropolis-Hastings ratio. The state caches energy and gradient, so a
step costs one gradient evaluation.

Chains are corrected independently, so fields with interaction terms are refused.
On constrained spaces the proposal is projected onto the space; the correction is
exact for Euclidean spaces.

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    >>> out = ef.MALA(step_size=0.5, num_steps=100).run(
    ...     field, torch.zeros(256, 2), generator=torch.Generator().manual_seed(0))
    >>> 0.5 < out.mean_acceptance < 1.0
    True
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor

from energyflow.field import Field
from energyflow.samplers._config import positive
from energyflow.samplers.base import (
    Recorder,
    SampleResult,
    energy_and_grad_or_reject,
    forbid_batch_coupling,
    prepare,
)
from energyflow.validation import integer, real


def _uniform_log(shape, like: Tensor, generator) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=generator.device if generator is not None else like.device)
    return torch.log(u.to(like.device))


@attrs.frozen
class MALA:
    """Metropolis-adjusted Langevin.

    Args:
        step_size (float): h (> 0), in the units of the Langevin step.
        num_steps (int): number of MH steps (>= 1).
        temperature (float): T (> 0); the target is exp(-U(x, T) / T).
    """

    step_size: float = attrs.field(default=0.01, converter=real(), validator=positive)
    num_steps: int = attrs.field(default=100, converter=integer(), validator=positive)
    temperature: float = attrs.field(default=1.0, converter=real(), validator=positive)

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Runs ``num_steps`` MH steps from ``x0`` of shape ``(B, *event)``."""
        T, h = self.temperature, self.step_size
        forbid_batch_coupling(field, "MALA")
        x, space = prepare(field, x0, T, generator)
        rec = Recorder(self.num_steps, x, record_every)
        evals0 = field.num_grad_evals
        e, g = field.energy_and_grad(x, T)
        if not bool(torch.isfinite(e).all() and torch.isfinite(g).all()):
            raise FloatingPointError("MALA: the energy or its gradient is NaN/inf at the initial states")
        accepted = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        divergences = torch.zeros((), device=x.device, dtype=torch.long)
        noise_scale = math.sqrt(2.0 * T * h)
        for k in range(self.num_steps):
            y = space.project(x - h * g + noise_scale * space.randn_like(x, generator))
            e_y, g_y, _ = energy_and_grad_or_reject(field, y, T)  # a proposal that raises is rejected
            # log q(y | x) = -|y - x + h g_x|^2 / (4 T h) + const
            # (the norm of the space, in which its noise is standard; g is already on the space)
            log_q_fwd = -space.sqnorm(y - x + h * g) / (4.0 * T * h)
            log_q_bwd = -space.sqnorm(x - y + h * g_y) / (4.0 * T * h)
            log_alpha = -(e_y - e) / T + log_q_bwd - log_q_fwd
            finite = torch.isfinite(log_alpha) & torch.isfinite(space.sqnorm(g_y))
            divergences += (~finite).sum()
            log_alpha = torch.where(finite, log_alpha, torch.full_like(log_alpha, -math.inf))
            accept = _uniform_log(log_alpha.shape, x, generator) < log_alpha
            mask = accept.reshape(-1, *([1] * (x.dim() - 1)))
            x = torch.where(mask, y, x)
            e = torch.where(accept, e_y, e)
            g = torch.where(mask, g_y, g)
            accepted += accept.to(x.dtype)
            rec.step(k, e, g, x)
        return SampleResult(
            samples=x,
            energy=e,
            energy_trace=rec.energy,
            grad_norm_trace=rec.grad_norm,
            trajectory=rec.trajectory(),
            acceptance_rate=accepted / self.num_steps,
            num_divergences=int(divergences),
            num_grad_evals=field.num_grad_evals - evals0,
            info={"temperature": T, "step_size": h},
        )
