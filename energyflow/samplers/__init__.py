"""Pluggable samplers over a compiled field: ``sampler.run(field, x0, generator=g)``."""

from energyflow.samplers.base import DivergenceError, Sampler, SampleResult
from energyflow.samplers.flow import GradientFlow
from energyflow.samplers.guided import GuidedLangevin
from energyflow.samplers.hmc import HMC
from energyflow.samplers.langevin import Langevin
from energyflow.samplers.mala import MALA
from energyflow.samplers.pyro_nuts import PyroNUTS

__all__ = ["DivergenceError", "GradientFlow", "GuidedLangevin", "HMC", "Langevin", "MALA", "PyroNUTS", "SampleResult", "Sampler"]
