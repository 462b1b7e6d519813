"""One registry that turns strings from configs and the CLI into classes.

Entries are stored as ``"module:attribute"`` paths and imported on first use, so this
module imports nothing of energyflow's but its errors, and registering never creates import cycles.

Example:
    >>> from energyflow.registry import SAMPLERS
    >>> SAMPLERS.get("langevin").__name__
    'Langevin'
    >>> "mala" in SAMPLERS.names()
    True
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from energyflow.errors import EnergyflowError


class RegistryError(EnergyflowError, KeyError, ValueError):
    """An unknown name was asked of a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0])


class Registry:
    """Maps lower-case names to classes (or factories), imported lazily.

    Args:
        kind (str): what the entries are, used in error messages ("sampler").
        entries (dict[str, str]): name -> ``"package.module:Attribute"``.
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._paths: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        for name, path in (entries or {}).items():
            self.register(name, path)

    def register(self, name: str, target: str | Any) -> None:
        """Adds ``name``; ``target`` is a ``"module:attr"`` path or the object itself."""
        key = name.lower().replace("-", "_")
        if isinstance(target, str):
            self._paths[key] = target
            self._loaded.pop(key, None)
        else:
            self._loaded[key] = target
            self._paths[key] = f"{target.__module__}:{getattr(target, '__qualname__', key)}"

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._paths)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower().replace("-", "_") in self._paths

    def get(self, name: str) -> Any:
        """Returns the object registered as ``name``.

        Raises:
            RegistryError: the name is unknown; the message lists the known names.
        """
        if not isinstance(name, str):
            raise RegistryError(f"{self.kind} name must be a string, got {type(name).__name__}")
        key = name.lower().replace("-", "_")
        if key in self._loaded:
            return self._loaded[key]
        if key not in self._paths:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        module, _, attr = self._paths[key].partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        self._loaded[key] = obj
        return obj

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Resolves ``name`` and calls it with ``kwargs``."""
        return self.get(name)(**kwargs)

    def __iter__(self) -> Iterable[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


SAMPLERS = Registry(
    "sampler",
    {
        "flow": "energyflow.samplers.flow:GradientFlow",
        "langevin": "energyflow.samplers.langevin:Langevin",
        "mala": "energyflow.samplers.mala:MALA",
        "hmc": "energyflow.samplers.hmc:HMC",
        "nuts": "energyflow.samplers.pyro_nuts:PyroNUTS",
    },
)

SCHEDULES = Registry(
    "schedule",
    {
        "energy_matching": "energyflow.schedule:EnergyMatchingSchedule",
        "constant": "energyflow.schedule:ConstantSchedule",
    },
)

SPACES = Registry(
    "space",
    {
        "euclidean": "energyflow.spaces:Euclidean",
        "symmetric_masked": "energyflow.spaces:SymmetricMasked",
        "zero_com": "energyflow.spaces:ZeroCenterOfMass",
    },
)

COUPLINGS = Registry(
    "coupling",
    {
        "ot": "energyflow.training.coupling:ExactOT",
        "sinkhorn": "energyflow.training.coupling:Sinkhorn",
        "independent": "energyflow.training.coupling:Independent",
    },
)

DOMAINS = Registry(
    "domain",
    {
        "toy": "energyflow.domains.toy:ToyDomain",
        "image": "energyflow.domains.image:ImageDomain",
    },
)

NETWORKS = Registry(
    "network",
    {
        "unet_vit": "energyflow.domains.image.networks:cifar10_potential",
    },
)
