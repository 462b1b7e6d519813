"""Langevin with an observation that guides the transport through its predicted endpoint.

With the Energy Matching schedule a tempered observation ``-log p(y | x)`` acts with
weight eps(t), which is zero before ``tau_star``: the transport along -grad V, which
decides most of the sample, never sees the measurement, and the Langevin phase at
eps_max is too short to undo a wrong choice (``benchmarks/digits_inverse.py``). This
sampler lets the observation act from ``t = 0`` on the point the transport is heading
to. Along the straight optimal-transport paths V was trained on, a state ``x`` at time
``t < 1`` ends near

    x1(x, t) = x - (1 - t) * grad V(x),

so the chain descends ``U(x) + w * L(x1(x, t))`` (``L = -log p(y | x)``, weight ``w``)
with the noise of the schedule eps(t). The gradient of the second term passes through
``grad V`` (a vector-Jacobian product, about one more gradient's cost), which is how the
measured pixels steer the unmeasured ones during transport. For ``t >= 1`` the endpoint
is the state itself and the drift is that of ``U + w * L``; with the default ``w =
eps(t_end)`` (eps_max) that is exactly the tempered posterior ``exp(-V/eps_max) p(y|x)``
the plain sampler targets, so only the path to it changes. This is the flow analogue of
diffusion posterior sampling (Chung et al. 2023), with the flow's own endpoint estimate.

Example:
    >>> import torch, energyflow as ef
    >>> prior = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    >>> obs = ef.observe(torch.tensor([[1.5]]), forward=torch.tensor([[1.0, 0.0]]), noise=0.5)
    >>> base = ef.Langevin(step_size=0.05, t_end=3.0, schedule=ef.EnergyMatchingSchedule(1.0, 1.0))
    >>> sampler = ef.GuidedLangevin(base, obs)
    >>> out = sampler.run(prior, torch.zeros(4000, 2), generator=torch.Generator().manual_seed(0))
    >>> round(float(out.samples[:, 0].mean()), 1)  # posterior mean 1.5 / (1 + 0.25) = 1.2
    1.2
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.energies.base import Energy
from energyflow.errors import InvalidValueError
from energyflow.field import Field
from energyflow.field import compile as compile_field
from energyflow.samplers._config import instance_of
from energyflow.samplers.base import SampleResult, prepare, raise_divergence
from energyflow.samplers.langevin import Langevin, integrate
from energyflow.validation import real


def _non_negative_or_none(instance, attribute, value) -> None:
    if value is not None and not (value >= 0 and value < float("inf")):
        raise InvalidValueError(f"GuidedLangevin.{attribute.name} must be a finite number >= 0 or None, got {value}")


@attrs.frozen(eq=False)
class GuidedLangevin:
    """A :class:`Langevin` run whose observation term guides the transport (see the module).

    Args:
        base (Langevin): step size, steps, schedule eps(t), method and ``t_start``.
        observation (Energy): ``-log p(y | x)`` per sample ``(B,)``, e.g.
            ``observe(...)``; it is evaluated at the predicted endpoint ``x1(x, t)``.
            It must not also be in the field passed to :meth:`run`.
        weight (float | None): ``w``; None takes the schedule's final temperature
            ``eps(t_end)``, which makes the chain's stationary density at eps_max the
            posterior ``exp(-V/eps_max) p(y | x)``.
    """

    base: Langevin = attrs.field(validator=instance_of(Langevin))
    observation: Energy = attrs.field(validator=instance_of(Energy))
    weight: float | None = attrs.field(default=None, converter=real(optional=True), validator=_non_negative_or_none)

    @property
    def t_end(self) -> float:
        """The time after the last step."""
        return self.base.t_start + self.base.steps * self.base.step_size

    def resolved_weight(self) -> float:
        """``w``: the given weight, or ``eps(t_end)`` of the base schedule."""
        return float(self.base.schedule(self.t_end)) if self.weight is None else float(self.weight)

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
        trace: bool = True,
        check_every: int = 1,
    ) -> SampleResult:
        """Runs the guided chain from ``x0`` of shape ``(B, *event)``.

        Args:
            field (Field): the prior and any other terms (``V``, repulsion...), without
                the observation.
            x0 (Tensor): initial states ``(B, *event)``.
            generator (torch.Generator | None): source of the noise.
            record_every (int | None): keep every k-th state in ``trajectory``.
            trace (bool): record the per-step energy (of ``U + w L(x1)``) and gradient norm.
            check_every (int): test the states for NaN/inf every k steps.

        Returns:
            SampleResult: ``num_grad_evals`` counts the vector-Jacobian product through
            ``grad V`` as one more gradient; ``info`` holds ``weight`` and ``t_end``.

        Raises:
            DivergenceError: a state became NaN/inf.
        """
        x, space = prepare(field, x0, float(self.base.schedule(self.base.t_start)), generator)
        obs = compile_field(self.observation, field.space or space)
        obs.check(x, 1.0)
        w = self.resolved_weight()
        evals0 = field.num_grad_evals
        extra = 0

        def drift(x: Tensor, t: float, eps: float) -> tuple[Tensor, Tensor]:
            nonlocal extra
            lead = 1.0 - t
            if lead <= 1e-9 or w == 0.0:  # at or past t = 1 the endpoint is the state itself
                e, g = field.energy_and_grad(x, eps)
                if w == 0.0:
                    return e, g
                e_obs, g_obs = obs.energy_and_grad(x)
                return e + w * e_obs, tree.map(lambda a, b: a + w * b, g, g_obs)
            with torch.enable_grad():
                xr, coords = tree.requires_grad(x)
                e, g = field.energy_and_grad(xr, eps, create_graph=True)
                e_obs = obs.expr.total(tree.map(lambda a, b: a - lead * b, xr, g), 1.0)
                g_obs = tree.grad(e_obs.sum(), x, coords) if not isinstance(x, torch.Tensor) else \
                    torch.autograd.grad(e_obs.sum(), xr)[0]
            extra += 1
            return e.detach() + w * e_obs.detach(), tree.map(lambda a, b: a.detach() + w * b, g, g_obs)

        def diverged(k: int, at: Tensor, first_step: int, eps: float) -> None:
            everything = compile_field(field.expr + self.observation, field.space)  # to name the term at fault
            raise_divergence("GuidedLangevin", everything, k, at, eps, f"Try a smaller step_size than "
                             f"{self.base.step_size:g} or a smaller weight than {w:g}.", first_step=first_step)

        x, rec, eps_list = integrate(self.base, drift, x, space, generator, record_every, trace, check_every, diverged)
        eps_final = float(self.base.schedule(self.t_end))
        with torch.no_grad():
            e_final = field.energy(x, eps_final) + w * obs.energy(x)
        return SampleResult(
            samples=x,
            energy=e_final,
            energy_trace=rec.energy,
            grad_norm_trace=rec.grad_norm,
            trajectory=rec.trajectory(),
            num_grad_evals=field.num_grad_evals - evals0 + extra,
            info={"t_end": self.t_end, "eps": eps_list, "method": self.base.method, "weight": w},
        )
