"""Validators shared by sampler configs."""

from __future__ import annotations

import math

from energyflow.errors import InvalidTypeError, InvalidValueError


def positive(instance, attribute, value) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InvalidValueError(f"{type(instance).__name__}.{attribute.name} must be a finite number > 0, got {value}")


def non_negative(instance, attribute, value) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise InvalidValueError(f"{type(instance).__name__}.{attribute.name} must be a finite number >= 0, got {value}")


def instance_of(cls: type):
    """A validator that refuses anything but a ``cls`` instance, naming the field."""

    def check(instance, attribute, value) -> None:
        if not isinstance(value, cls):
            raise InvalidTypeError(
                f"{type(instance).__name__}.{attribute.name} must be a {cls.__name__}, got {type(value).__name__}"
            )

    return check


def one_of(*choices: str):
    def check(instance, attribute, value) -> None:
        if value not in choices:
            raise InvalidValueError(f"{type(instance).__name__}.{attribute.name} must be one of {choices}, got {value!r}")

    return check


def resolve_num_steps(instance, step_size: float, num_steps: int | None, t_end: float | None, t_start: float = 0.0) -> int:
    """Number of steps from either ``num_steps`` or the time horizon ``t_end``."""
    if (num_steps is None) == (t_end is None):
        raise InvalidValueError(f"{type(instance).__name__}: give exactly one of num_steps and t_end")
    if num_steps is not None:
        return int(num_steps)
    if not (math.isfinite(t_end) and math.isfinite(t_start)):
        raise InvalidValueError(f"{type(instance).__name__}: t_start ({t_start}) and t_end ({t_end}) must be finite")
    span = t_end - t_start
    if span <= 0:
        raise InvalidValueError(f"{type(instance).__name__}: t_end ({t_end}) must exceed t_start ({t_start})")
    return max(1, round(span / step_size))


def resolve_draws(instance) -> None:
    """``num_samples`` and ``thin`` of an MCMC config (in ``__attrs_post_init__``).

    ``num_samples`` is Stan's and NumPyro's name: the post-warm-up iterations, of which
    every ``thin``-th is kept (``num_samples // thin`` draws). When it is given it sets
    ``num_steps`` (whatever that was), so ``attrs.evolve(sampler, num_samples=...)`` works.
    """
    name = type(instance).__name__
    if instance.num_samples is None:
        if instance.thin != 1:
            raise InvalidValueError(f"{name}.thin={instance.thin} thins kept draws: give num_samples too")
        return
    if instance.thin > instance.num_samples:
        raise InvalidValueError(
            f"{name}.thin ({instance.thin}) exceeds num_samples ({instance.num_samples}): no draw would be kept"
        )
    object.__setattr__(instance, "num_steps", instance.num_samples)
