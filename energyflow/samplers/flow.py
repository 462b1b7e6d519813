"""Gradient flow ``dx/dt = -grad U(x, eps)``, integrated with Euler or Heun.

Euler has global error O(dt), Heun (explicit trapezoid) O(dt^2).

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(1), torch.eye(1)))
    >>> out = ef.GradientFlow(step_size=0.01, t_end=1.0, method="heun").run(field, torch.ones(1, 1))
    >>> round(float(out.samples), 4)    # exp(-1)
    0.3679
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.field import Field
from energyflow.samplers._config import non_negative, one_of, positive, resolve_num_steps
from energyflow.samplers.base import Recorder, SampleResult, prepare, raise_divergence
from energyflow.validation import integer, real


@attrs.frozen
class GradientFlow:
    """Deterministic gradient flow of the compiled field.

    Args:
        step_size (float): dt (> 0).
        num_steps (int | None): number of steps; or give ``t_end``.
        t_end (float | None): integration time.
        method (str): ``"euler"`` or ``"heun"``.
        temperature (float): eps passed to the field (weights tempered terms); 1 keeps the
            field as written, 0 follows the learned potential alone.
    """

    step_size: float = attrs.field(default=0.01, converter=real(), validator=positive)
    num_steps: int | None = attrs.field(default=None, converter=integer(optional=True))
    t_end: float | None = attrs.field(default=None, converter=real(optional=True))
    method: str = attrs.field(default="euler", validator=one_of("euler", "heun"))
    temperature: float = attrs.field(default=1.0, converter=real(), validator=non_negative)

    def __attrs_post_init__(self) -> None:
        if self.num_steps is None and self.t_end is None:
            object.__setattr__(self, "num_steps", 100)
        if self.num_steps is not None and int(self.num_steps) < 1:
            raise InvalidValueError(f"GradientFlow.num_steps must be >= 1, got {self.num_steps}")
        resolve_num_steps(self, self.step_size, self.num_steps, self.t_end)

    @property
    def steps(self) -> int:
        return resolve_num_steps(self, self.step_size, self.num_steps, self.t_end)

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Integrates from ``x0`` of shape ``(B, *event)``; ``generator`` is unused."""
        n, dt, eps = self.steps, self.step_size, self.temperature
        x, space = prepare(field, x0, eps, generator)
        rec = Recorder(n, x, record_every)
        evals0 = field.num_grad_evals
        for k in range(n):
            e, g = field.energy_and_grad(x, eps)
            x_new = space.project(tree.map(lambda a, b: a - dt * b, x, g))
            if self.method == "heun":
                _, g2 = field.energy_and_grad(x_new, eps)
                x_new = space.project(tree.map(lambda a, b, c: a - 0.5 * dt * (b + c), x, g, g2))
            if not bool(tree.isfinite(x_new).all()) or not bool(torch.isfinite(e).all()):
                raise_divergence("GradientFlow", field, k, x, eps, f"Try a smaller step_size than {dt:g}.")
            rec.step(k, e, g, x_new)
            x = x_new
        with torch.no_grad():
            e_final = field.energy(x, eps)
        return SampleResult(
            samples=x,
            energy=e_final,
            energy_trace=rec.energy,
            grad_norm_trace=rec.grad_norm,
            trajectory=rec.trajectory(),
            num_grad_evals=field.num_grad_evals - evals0,
            info={"t_end": n * dt, "method": self.method},
        )
