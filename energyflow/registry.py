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


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


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
        key = _key(name)
        if isinstance(target, str):
            self._paths[key] = target
            self._loaded.pop(key, None)
        else:
            self._loaded[key] = target
            self._paths[key] = f"{target.__module__}:{getattr(target, '__qualname__', key)}"

    def unregister(self, name: str) -> None:
        """Removes ``name`` (no error if it is not registered)."""
        key = _key(name)
        self._paths.pop(key, None)
        self._loaded.pop(key, None)

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
        "graph_ot": "energyflow.domains.graph.coupling:PermutationOT",
    },
)

DOMAINS = Registry("domain")
"""Domain name -> domain class; fill it with :func:`register_domain`, never directly."""

_DOMAIN_PRESETS: dict[str, str] = {}


def register_domain(name: str, target: str | Any, *, default_preset: str) -> None:
    """Registers a domain: its name, its class and the training preset a run of it starts from.

    This is the one place a domain is declared; :data:`DOMAINS` resolves the name and
    :func:`domain_default_preset` (used by
    :func:`energyflow.training.config.default_preset`) answers the preset without
    importing the domain's module.

    Args:
        name (str): the name configs and the CLI use (``"toy"``).
        target (str | Any): ``"module:Class"`` or the class itself.
        default_preset (str): a key of :data:`energyflow.training.config.PRESETS` whose
            ``domain`` is this one.

    Example:
        >>> register_domain("line", "energyflow.domains.toy:ToyDomain", default_preset="toy")
        >>> domain_default_preset("line"), DOMAINS.get("line").__name__
        ('toy', 'ToyDomain')
        >>> unregister_domain("line"); "line" in DOMAINS
        False
    """
    if not isinstance(default_preset, str) or not default_preset:
        raise RegistryError(f"default_preset of domain {name!r} must be a preset name, got {default_preset!r}")
    DOMAINS.register(name, target)
    _DOMAIN_PRESETS[_key(name)] = default_preset


def unregister_domain(name: str) -> None:
    """Removes a domain added by :func:`register_domain` (tests and plug-ins that clean up)."""
    DOMAINS.unregister(name)
    _DOMAIN_PRESETS.pop(_key(name), None)


def domain_default_preset(name: str) -> str:
    """The preset a run of domain ``name`` starts from when none is named.

    Raises:
        RegistryError: the domain is unknown; the message lists the known ones.
    """
    if name not in DOMAINS:
        DOMAINS.get(name)  # raises with the list of names
    return _DOMAIN_PRESETS[_key(name)]


register_domain("toy", "energyflow.domains.toy:ToyDomain", default_preset="toy")
register_domain("image", "energyflow.domains.image:ImageDomain", default_preset="mnist")
register_domain("graph", "energyflow.domains.graph:GraphDomain", default_preset="community_small")
register_domain("molecule", "energyflow.domains.molecule:MoleculeDomain", default_preset="qm9")
register_domain("protein", "energyflow.domains.protein:ProteinDomain", default_preset="aav_medium")

NETWORKS = Registry(
    "network",
    {
        "unet_vit": "energyflow.domains.image.networks:cifar10_potential",
    },
)
"""Named potential networks: factories called with keyword options.

A factory lists the keyword options it takes in its ``options`` attribute (a tuple of
names); :func:`energyflow.training.build.build_network` refuses any other with a
ConfigError. A factory that lists ``output_scale`` is built with ``output_scale=1.0``:
the trainer applies the config's ``output_scale`` itself.
"""
