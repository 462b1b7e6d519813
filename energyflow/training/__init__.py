"""Energy Matching training: couplings, losses, configs, checkpoints, the trainer and its run directories.

Modules: ``config`` (TrainConfig, presets, files), ``build`` (device, domain and network
from a config), ``trainer`` (Trainer), ``run`` (load_potential, read_metrics, plot_run,
sampler_for: what reads a run directory back), ``checkpoint``, ``coupling``, ``losses``.
"""

from energyflow.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from energyflow.training.config import PRESETS, ConfigError, TrainConfig, resolve_config
from energyflow.training.run import load_potential, read_metrics
from energyflow.training.trainer import Trainer, TrainingDiverged, TrainResult

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "load_checkpoint",
    "load_potential",
    "read_metrics",
    "resolve_config",
    "save_checkpoint",
]
