"""Strict converters for attrs configs: an integer field takes integers, a boolean booleans.

Python's ``int(1.7)`` is 1 and ``float(False)`` is 0.0, so configs built on them change a
user's value without a word. These converters accept a value only where the conversion
is exact and raise :class:`~energyflow.errors.InvalidValueError` naming the field
otherwise. Strings are parsed (config files and ``--set`` deliver them), so ``"12"`` is
12 and ``"1e-4"`` is 1e-4 (YAML 1.1 reads ``1e-4`` as a string).

Use them through :func:`integer`, :func:`real` and :func:`boolean`, which return
``attrs.Converter`` objects that know the field they convert:

Example:
    >>> import attrs
    >>> from energyflow.validation import integer, real
    >>> @attrs.frozen
    ... class Config:
    ...     steps: int = attrs.field(default=10, converter=integer())
    ...     lr: float = attrs.field(default=0.1, converter=real())
    >>> Config(steps=1e3, lr="1e-4")
    Config(steps=1000, lr=0.0001)
    >>> Config(steps=2.5)
    Traceback (most recent call last):
    ...
    energyflow.errors.InvalidValueError: Config.steps must be an integer, got 2.5
    >>> Config(lr=True)
    Traceback (most recent call last):
    ...
    energyflow.errors.InvalidValueError: Config.lr must be a number, got True
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import attrs

from energyflow.errors import InvalidValueError

_NONE_WORDS = ("none", "null", "")


def _where(instance: Any, field: attrs.Attribute) -> str:
    return f"{type(instance).__name__}.{field.name}"


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def to_int(value: Any, where: str) -> int:
    """``value`` as an int when that is exact; bools, fractions and words are refused."""
    if isinstance(value, bool):
        raise InvalidValueError(f"{where} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise InvalidValueError(f"{where} must be an integer, got {value!r}") from None
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)  # 1e3 from JSON or YAML
    raise InvalidValueError(f"{where} must be an integer, got {value!r}")


def to_float(value: Any, where: str) -> float:
    """``value`` as a float; bools and non-numeric words are refused (``inf``/``nan`` pass:
    a validator decides whether they are allowed)."""
    if isinstance(value, bool):
        raise InvalidValueError(f"{where} must be a number, got {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise InvalidValueError(f"{where} must be a number, got {value!r}")


def to_bool(value: Any, where: str) -> bool:
    """``value`` as a bool: True/False, or the words true/false/yes/no/on/off/1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
    raise InvalidValueError(f"{where} must be true or false, got {value!r}")


def integer(*, optional: bool = False) -> attrs.Converter:
    """An attrs converter to int (``None``/"none" pass when ``optional``)."""

    def convert(value: Any, instance: Any, field: attrs.Attribute) -> int | None:
        if optional and _is_none(value):
            return None
        return to_int(value, _where(instance, field))

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def real(*, optional: bool = False) -> attrs.Converter:
    """An attrs converter to float (``None``/"none" pass when ``optional``)."""

    def convert(value: Any, instance: Any, field: attrs.Attribute) -> float | None:
        if optional and _is_none(value):
            return None
        return to_float(value, _where(instance, field))

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def boolean() -> attrs.Converter:
    """An attrs converter to bool that refuses anything but booleans and their words."""

    def convert(value: Any, instance: Any, field: attrs.Attribute) -> bool:
        return to_bool(value, _where(instance, field))

    return attrs.Converter(convert, takes_self=True, takes_field=True)
