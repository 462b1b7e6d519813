"""Domains: a data set, its space, a default potential network and its metrics.

Each domain lives in its own module (or package) and is imported lazily, so ``import
energyflow.domains`` stays light (no matplotlib, POT or domain-specific packages).
Resolve domains by name through :data:`energyflow.registry.DOMAINS`; a domain is declared
once, with its default preset, by :func:`energyflow.registry.register_domain`.

Example:
    >>> from energyflow.domains import Domain, ToyDomain
    >>> isinstance(ToyDomain("moons"), Domain)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

from energyflow.domains.base import Domain, PlotUnavailableError

_LAZY = {
    "ToyDomain": "energyflow.domains.toy",
    "DATASETS": "energyflow.domains.toy",
    "toy": "energyflow.domains.toy",
    "ImageDomain": "energyflow.domains.image",
    "image": "energyflow.domains.image",
    "GraphDomain": "energyflow.domains.graph",
    "graph": "energyflow.domains.graph",
    "ProteinDomain": "energyflow.domains.protein",
    "protein": "energyflow.domains.protein",
}

__all__ = ["DATASETS", "Domain", "GraphDomain", "ImageDomain", "PlotUnavailableError", "ProteinDomain", "ToyDomain"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if name == module.__name__.rpartition(".")[2] else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'energyflow.domains' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_LAZY))
