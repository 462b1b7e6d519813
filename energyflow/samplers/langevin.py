"""Langevin dynamics with a temperature schedule eps(t) (the Energy Matching sampler).

``x <- x - dt * grad U(x, eps(t)) + sqrt(2 eps(t) dt) * xi``, with ``t`` advancing by
``dt`` per step from ``t_start``. With the paper's schedule the chain is deterministic
transport along -grad V before ``tau_star`` and Langevin at ``eps_max`` after ``t = 1``.
The Heun predictor-corrector averages the drift at the current and the predicted state
with the same noise (two gradients per step).

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    >>> sampler = ef.Langevin(step_size=0.05, num_steps=200, schedule=1.0)
    >>> out = sampler.run(field, torch.zeros(500, 2), generator=torch.Generator().manual_seed(0))
    >>> out.samples.shape, round(float(out.samples.var()), 1)
    (torch.Size([500, 2]), 1.0)
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch
from torch import Tensor

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.field import Field
from energyflow.samplers._config import one_of, positive, resolve_num_steps
from energyflow.samplers.base import Recorder, SampleResult, prepare, raise_divergence
from energyflow.schedule import ConstantSchedule, Schedule, as_schedule
from energyflow.spaces import Space
from energyflow.tree import State
from energyflow.validation import integer, real


@attrs.frozen
class Langevin:
    """Unadjusted Langevin dynamics under a temperature schedule.

    Args:
        step_size (float): dt (> 0).
        num_steps (int | None): number of steps; or give ``t_end`` instead.
        t_end (float | None): final time tau_s; ``num_steps = round((t_end - t_start) / dt)``.
        schedule (Schedule | float): eps(t); a number means a constant temperature.
        method (str): ``"euler"`` (Euler-Maruyama, one gradient a step) or ``"heun"``
            (predictor-corrector, two).
        t_start (float): time of the first step.
    """

    step_size: float = attrs.field(default=0.01, converter=real(), validator=positive)
    num_steps: int | None = attrs.field(default=None, converter=integer(optional=True))
    t_end: float | None = attrs.field(default=None, converter=real(optional=True))
    schedule: Schedule = attrs.field(default=ConstantSchedule(1.0), converter=as_schedule)
    method: str = attrs.field(default="euler", validator=one_of("euler", "heun"))
    t_start: float = attrs.field(default=0.0, converter=real())

    def __attrs_post_init__(self) -> None:
        if self.num_steps is None and self.t_end is None:
            object.__setattr__(self, "num_steps", 100)
        if self.num_steps is not None and int(self.num_steps) < 1:
            raise InvalidValueError(f"Langevin.num_steps must be >= 1, got {self.num_steps}")
        resolve_num_steps(self, self.step_size, self.num_steps, self.t_end, self.t_start)

    @property
    def steps(self) -> int:
        """The number of steps this config runs."""
        return resolve_num_steps(self, self.step_size, self.num_steps, self.t_end, self.t_start)

    def temperatures(self) -> list[float]:
        """eps at every step, ``[eps(t_start + k dt) for k in range(steps)]``."""
        return [float(self.schedule(self.t_start + k * self.step_size)) for k in range(self.steps)]

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
        """Runs the chain from ``x0`` of shape ``(B, *event)``.

        Args:
            field (Field): the compiled energy.
            x0 (Tensor): initial states ``(B, *event)``.
            generator (torch.Generator | None): source of the noise.
            record_every (int | None): keep every k-th state in ``trajectory``.
            trace (bool): record the per-step energy and gradient-norm traces; False
                leaves them empty (inner loops such as training negatives).
            check_every (int): test the states for NaN/inf every k steps (and at the
                last step); each test synchronises with the device.

        Raises:
            DivergenceError: a state became NaN/inf (the message names the step and term).
        """
        x, space = prepare(field, x0, float(self.schedule(self.t_start)), generator)
        evals0 = field.num_grad_evals

        def drift(x: Tensor, t: float, eps: float) -> tuple[Tensor, Tensor]:
            return field.energy_and_grad(x, eps)

        def diverged(k: int, at: Tensor, first_step: int, eps: float) -> None:
            raise_divergence("Langevin", field, k, at, eps, f"Try a smaller step_size than {self.step_size:g}.",
                             first_step=first_step)

        x, rec, eps_list = integrate(self, drift, x, space, generator, record_every, trace, check_every, diverged)
        eps_final = float(self.schedule(self.t_start + self.steps * self.step_size))
        with torch.no_grad():
            e_final = field.energy(x, eps_final)
        return SampleResult(
            samples=x,
            energy=e_final,
            energy_trace=rec.energy,
            grad_norm_trace=rec.grad_norm,
            trajectory=rec.trajectory(),
            num_grad_evals=field.num_grad_evals - evals0,
            info={"t_end": self.t_start + self.steps * self.step_size, "eps": eps_list, "method": self.method},
        )


Drift = Callable[[State, float, float], "tuple[Tensor, State]"]


def _step(x: State, g: State, alpha: float, xi: State | None, noise_scale: float) -> State:
    """``x + alpha g + noise_scale xi`` (in place on a fresh tensor for tensor states)."""
    if isinstance(x, Tensor):
        out = torch.add(x, g, alpha=alpha)
        return out.add_(xi, alpha=noise_scale) if xi is not None else out
    if xi is None:
        return tree.map(lambda a, b: a + alpha * b, x, g)
    return tree.map(lambda a, b, c: a + alpha * b + noise_scale * c, x, g, xi)


def integrate(
    config: Langevin,
    drift: Drift,
    x: Tensor,
    space: Space,
    generator: torch.Generator | None,
    record_every: int | None,
    trace: bool,
    check_every: int,
    diverged: Callable[[int, Tensor, int, float], None],
) -> tuple[Tensor, Recorder, list[float]]:
    """The Euler-Maruyama / Heun loop of :class:`Langevin` for any drift.

    ``x <- x - dt * grad(x, t, eps(t)) + sqrt(2 eps(t) dt) * xi`` for ``config.steps``
    steps from ``config.t_start``, where ``drift(x, t, eps)`` returns the per-sample
    energies ``(B,)`` and the gradient ``(B, *event)`` the chain descends. Shared by
    :class:`Langevin` and the guided sampler of :mod:`energyflow.samplers.guided`.
    When a state turns NaN/inf, ``diverged(step, at, first_step, eps)`` must raise; ``at``
    is the offending state if its coordinates are finite (a term went NaN there), else
    the last state that passed a check, and ``first_step`` the step after that check.

    Returns:
        tuple: the final states ``(B, *event)``, the :class:`Recorder` and eps per step.
    """
    if check_every < 1:
        raise InvalidValueError(f"check_every must be >= 1, got {check_every}")
    n, dt, t0 = config.steps, config.step_size, config.t_start
    eps_list = config.temperatures()
    rec = Recorder(n if trace else 0, x, record_every)
    x_checked, k_checked = x, -1
    heun = config.method == "heun"

    def stop(k: int, x: State, eps: float) -> None:
        diverged(k, x if bool(tree.isfinite(x).all()) else x_checked, k_checked + 1, eps)

    for k in range(n):
        eps = eps_list[k]
        e, g = drift(x, t0 + k * dt, eps)  # energies of the state entering step k
        if trace:
            rec.step(k, e, g)
        if k % check_every == 0 or k == n - 1:
            # With traces on, the recorded mean energy is NaN/inf exactly when some
            # energy is, so one scalar test covers the batch.
            finite = math.isfinite(float(rec.energy[k])) if trace else bool(torch.isfinite(e).all())
            if not finite:
                stop(k, x, eps)
            x_checked, k_checked = x, k
        noise_scale = math.sqrt(2.0 * eps * dt)
        xi = space.randn_like(x, generator) if noise_scale > 0 else None
        x_new = _step(x, g, -dt, xi, noise_scale)
        if heun:
            eps_next = eps_list[k + 1] if k + 1 < n else float(config.schedule(t0 + n * dt))
            _, g_pred = drift(space.project(x_new), t0 + (k + 1) * dt, eps_next)
            x_new = _step(x, tree.map(torch.add, g, g_pred), -0.5 * dt, xi, noise_scale)
        x = space.project(x_new)
        rec.frame(k, x)
    if not bool(tree.isfinite(x).all()):
        stop(n, x, eps_list[-1])
    return x, rec, eps_list
