"""Temperature schedules eps(t) for Langevin sampling.

The Energy Matching schedule (Balcerak et al. 2025) is zero before ``tau_star``
(deterministic transport along -grad V), ramps linearly to ``eps_max`` at ``t = 1`` and
stays at ``eps_max`` afterwards.

Example:
    >>> s = EnergyMatchingSchedule(tau_star=0.8, eps_max=0.15)
    >>> [round(s(t), 4) for t in (0.5, 0.9, 1.0, 2.0)]
    [0.0, 0.075, 0.15, 0.15]
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.validation import real


@runtime_checkable
class Schedule(Protocol):
    """A temperature as a function of sampler time ``t >= 0``."""

    def __call__(self, t: float) -> float: ...


def _in_unit_interval(instance, attribute, value) -> None:
    if not (0.0 <= value <= 1.0):
        raise InvalidValueError(f"{attribute.name} must lie in [0, 1], got {value}")


def _non_negative(instance, attribute, value) -> None:
    if not value >= 0.0:  # also rejects NaN
        raise InvalidValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class EnergyMatchingSchedule:
    """eps(t) = 0 for t < tau_star, eps_max (t - tau_star)/(1 - tau_star) until 1, then eps_max.

    Args:
        tau_star (float): start of the ramp, in [0, 1]; 1 means no ramp (a jump at t = 1).
        eps_max (float): final temperature, >= 0.
    """

    tau_star: float = attrs.field(default=0.8, converter=real(), validator=_in_unit_interval)
    eps_max: float = attrs.field(default=0.15, converter=real(), validator=_non_negative)

    def __call__(self, t: float) -> float:
        if t < self.tau_star:
            return 0.0
        if t >= 1.0:
            return self.eps_max
        return self.eps_max * (t - self.tau_star) / (1.0 - self.tau_star)


@attrs.frozen
class ConstantSchedule:
    """eps(t) = eps for all t.

    Args:
        eps (float): the temperature, >= 0.
    """

    eps: float = attrs.field(default=1.0, converter=real(), validator=_non_negative)

    def __call__(self, t: float) -> float:
        return self.eps


def as_schedule(value: "Schedule | float | int") -> Schedule:
    """A number becomes a :class:`ConstantSchedule`; a schedule is returned as is."""
    if isinstance(value, (int, float)):
        return ConstantSchedule(float(value))
    if callable(value):
        return value
    raise InvalidTypeError(f"a schedule must be a number or a callable eps(t), got {type(value).__name__}")
