"""energyflow: energy-based generative modelling with Energy Matching.

Compose energy terms, compile them into one differentiable scalar field, and sample
it with pluggable samplers:

    >>> import torch, energyflow as ef
    >>> prior = ef.GaussianPotential(torch.zeros(2), torch.eye(2))
    >>> posterior = ef.compile(prior + ef.observe(torch.tensor([1.0]), forward=torch.tensor([[1.0, 0.0]]), noise=0.5))
    >>> out = ef.Langevin(step_size=0.05, num_steps=300, schedule=1.0).run(
    ...     posterior, torch.zeros(2000, 2), generator=torch.Generator().manual_seed(0))
    >>> round(float(out.samples[:, 0].mean()), 1)    # analytic posterior mean 0.8
    0.8

Submodules (``training``, ``domains``, ``likelihood``, ``diagnostics``, ``plotting``,
``cli``, ...) are imported lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # energies
    "Energy": "energyflow.energies.base",
    "Sum": "energyflow.energies.base",
    "Scaled": "energyflow.energies.base",
    "Potential": "energyflow.energies.potential",
    "GaussianPotential": "energyflow.energies.potential",
    "GaussianMixture": "energyflow.energies.potential",
    "DoubleWell": "energyflow.energies.potential",
    "observe": "energyflow.energies.observe",
    "Observation": "energyflow.energies.observe",
    "model": "energyflow.energies.model",
    "Model": "energyflow.energies.model",
    "Boltzmann": "energyflow.energies.model",
    "Prior": "energyflow.energies.priors",
    "BoxPrior": "energyflow.energies.priors",
    "TotalVariation": "energyflow.energies.priors",
    "Repulsion": "energyflow.energies.interaction",
    "RBFInteraction": "energyflow.energies.interaction",
    # field and spaces
    "compile": "energyflow.field",
    "Field": "energyflow.field",
    "FieldError": "energyflow.field",
    "Euclidean": "energyflow.spaces",
    "SymmetricMasked": "energyflow.spaces",
    "ZeroCenterOfMass": "energyflow.spaces",
    "NodeMasked": "energyflow.spaces",
    "ProductSpace": "energyflow.spaces",
    "EnergyMatchingSchedule": "energyflow.schedule",
    "ConstantSchedule": "energyflow.schedule",
    # samplers
    "GradientFlow": "energyflow.samplers.flow",
    "Langevin": "energyflow.samplers.langevin",
    "GuidedLangevin": "energyflow.samplers.guided",
    "MALA": "energyflow.samplers.mala",
    "HMC": "energyflow.samplers.hmc",
    "PyroNUTS": "energyflow.samplers.pyro_nuts",
    "SampleResult": "energyflow.samplers.base",
    "DivergenceError": "energyflow.samplers.base",
}

_SUBMODULES = {"energies", "samplers", "training", "domains", "likelihood", "plotting", "metrics", "cli", "registry",
               "field", "spaces", "schedule", "inverse", "tree", "diagnostics"}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"energyflow.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'energyflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)
