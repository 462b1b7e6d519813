"""Hamiltonian Monte Carlo with a leapfrog integrator, exact for exp(-U(x, T) / T).

Each chain draws a momentum ``p ~ N(0, M)`` (diagonal mass ``M``), takes
``num_leapfrog`` leapfrog steps of ``H(x, p) = U(x, T)/T + p^T M^-1 p / 2`` and is
accepted on its own. The state caches the gradient, so an iteration costs
``num_leapfrog`` gradient evaluations. A transition whose energy error exceeds
``max_energy_error`` (or is NaN) is divergent: it is rejected and counted.

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(3), torch.eye(3)))
    >>> out = ef.HMC(step_size=0.3, num_leapfrog=5, num_steps=50).run(
    ...     field, torch.zeros(128, 3), generator=torch.Generator().manual_seed(0))
    >>> out.samples.shape, out.num_divergences
    (torch.Size([128, 3]), 0)
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor

from energyflow.errors import InvalidValueError
from energyflow.field import Field
from energyflow.samplers._config import positive
from energyflow.samplers.base import (
    Recorder,
    SampleResult,
    energy_and_grad_or_reject,
    forbid_batch_coupling,
    prepare,
)
from energyflow.samplers.mala import _uniform_log
from energyflow.validation import integer, real


@attrs.frozen
class HMC:
    """Hamiltonian Monte Carlo.

    Args:
        step_size (float): leapfrog step (> 0).
        num_leapfrog (int): leapfrog steps per iteration (>= 1).
        num_steps (int): number of iterations (>= 1).
        temperature (float): T (> 0); the target is exp(-U(x, T) / T).
        inverse_mass (Tensor | float): diagonal of M^-1, broadcastable to the event shape.
        max_energy_error (float): energy error above which a transition is divergent.
    """

    step_size: float = attrs.field(default=0.1, converter=real(), validator=positive)
    num_leapfrog: int = attrs.field(default=10, converter=integer(), validator=positive)
    num_steps: int = attrs.field(default=100, converter=integer(), validator=positive)
    temperature: float = attrs.field(default=1.0, converter=real(), validator=positive)
    inverse_mass: Tensor | float = attrs.field(default=1.0)
    max_energy_error: float = attrs.field(default=1000.0, converter=real(), validator=positive)

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Runs ``num_steps`` HMC iterations from ``x0`` of shape ``(B, *event)``."""
        T, h = self.temperature, self.step_size
        forbid_batch_coupling(field, "HMC")
        x, space = prepare(field, x0, T, generator)
        inv_mass = torch.as_tensor(self.inverse_mass, dtype=x.dtype, device=x.device)
        if (inv_mass <= 0).any():
            raise InvalidValueError("HMC.inverse_mass must be positive")
        mass_sqrt = inv_mass.rsqrt()
        rec = Recorder(self.num_steps, x, record_every)
        evals0 = field.num_grad_evals
        e, g = field.energy_and_grad(x, T)
        if not bool(torch.isfinite(e).all() and torch.isfinite(g).all()):
            raise FloatingPointError("HMC: the energy or its gradient is NaN/inf at the initial states")
        accepted = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        divergences = torch.zeros((), device=x.device, dtype=torch.long)
        shape = (-1, *([1] * (x.dim() - 1)))
        for k in range(self.num_steps):
            p = space.randn_like(x, generator) * mass_sqrt
            kinetic0 = 0.5 * space.sqnorm(p * inv_mass.sqrt())
            h0 = e / T + kinetic0
            xn, gn = x, g
            pn = p - 0.5 * h * gn / T
            broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            for i in range(self.num_leapfrog):
                xn = space.project(xn + h * inv_mass * pn)
                # A chain whose evaluation raised waits at its start (it is rejected anyway); no host sync.
                xn = torch.where(broken.reshape(shape), x, xn)
                en, gn, failed = energy_and_grad_or_reject(field, xn, T)
                broken |= failed
                if i < self.num_leapfrog - 1:
                    pn = pn - h * gn / T
            pn = pn - 0.5 * h * gn / T
            h1 = en / T + 0.5 * space.sqnorm(pn * inv_mass.sqrt())
            delta = torch.where(broken, torch.full_like(h1, math.inf), h1 - h0)
            divergent = ~torch.isfinite(delta) | (delta > self.max_energy_error)
            divergences += divergent.sum()
            log_alpha = torch.where(divergent, torch.full_like(delta, -math.inf), -delta)
            accept = _uniform_log(log_alpha.shape, x, generator) < log_alpha
            x = torch.where(accept.reshape(shape), xn, x)
            g = torch.where(accept.reshape(shape), gn, g)
            e = torch.where(accept, en, e)
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
            info={"temperature": T, "step_size": h, "num_leapfrog": self.num_leapfrog},
        )
