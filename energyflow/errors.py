"""The errors energyflow raises for mistakes a user can fix.

Every error a user can cause and correct (a bad argument, an invalid config, a missing
or unsafe checkpoint, a device that is not there, a chain that diverged) derives from
:class:`EnergyflowError`. The command line turns exactly these, and OS errors about a
path, into one line and exit code 2; anything else is a bug and keeps its traceback.

The concrete classes also derive from the built-in exception a Python user would
expect (``ValueError``, ``TypeError``, ...), so ``except ValueError`` keeps working.

Example:
    >>> from energyflow.errors import EnergyflowError, InvalidValueError
    >>> issubclass(InvalidValueError, (EnergyflowError, ValueError))
    True
    >>> import energyflow as ef
    >>> try:
    ...     ef.Langevin(step_size=-1.0)
    ... except EnergyflowError as err:
    ...     print(err)
    Langevin.step_size must be a finite number > 0, got -1.0
"""

from __future__ import annotations


class EnergyflowError(Exception):
    """Base class of every error a user can cause and fix."""


class InvalidValueError(EnergyflowError, ValueError):
    """An argument, config value or input has a value energyflow refuses."""


class InvalidTypeError(EnergyflowError, TypeError):
    """An argument has the wrong type (or a user-defined term is incomplete)."""


class DeviceError(EnergyflowError, RuntimeError):
    """The requested device does not exist on this machine."""


class OutputPathError(EnergyflowError, OSError):
    """An output path cannot be written, or writing it would destroy something."""


__all__ = ["EnergyflowError", "InvalidValueError", "InvalidTypeError", "DeviceError", "OutputPathError"]
