"""Builders shared by the trainer and the run-directory API: device, domain, network.

Everything a config names is built here, from explicit options: a domain class lists
the options its constructor takes (:attr:`energyflow.domains.Domain.options`) and those
of its default network (:attr:`~energyflow.domains.Domain.network_options`); a named
network's factory lists its own (``factory.options``). The config's
``domain_options`` / ``network_options`` are checked against those lists (see
:func:`energyflow.training.config.domain_kwargs` and
:func:`~energyflow.training.config.network_kwargs` for how the top-level ``dataset``,
``source``, ``hidden`` and ``depth`` fields fold in).

Example:
    >>> from energyflow.training.config import TrainConfig
    >>> cfg = TrainConfig(domain="toy", dataset="rings", hidden=8, depth=1, domain_options={"test_size": 100})
    >>> domain = build_domain(cfg)
    >>> domain, build_network(domain, cfg)[0].out_features
    (ToyDomain(dataset='rings', source='gaussian', test_size=100), 8)
"""

from __future__ import annotations

import os

import torch
from torch import nn

from energyflow.domains.base import Domain
from energyflow.errors import DeviceError, InvalidTypeError, InvalidValueError
from energyflow.registry import DOMAINS, NETWORKS
from energyflow.training.config import ConfigError, TrainConfig, domain_kwargs, network_kwargs

__all__ = ["build_domain", "build_network", "resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """The device ``name`` denotes on this machine.

    ``"auto"`` is CUDA (the ``LOCAL_RANK``-th device under torchrun) when available,
    else the CPU.

    Raises:
        DeviceError: an unknown device name, or a device this machine does not have.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} is not available: this machine (or this PyTorch build) has no CUDA; "
                              "use --device cpu or --device auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r} is not available: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"device {name!r} is not available on this machine; use --device cpu or --device auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda or mps")
    return device


def build_domain(cfg: TrainConfig) -> Domain:
    """The domain a config names (through the registry), built with the config's options.

    Raises:
        ConfigError: an option the domain does not take, or a value it refuses (the
            message says which).
    """
    kwargs = domain_kwargs(cfg)
    try:
        return DOMAINS.get(cfg.domain)(**kwargs)
    except ConfigError:
        raise
    except (InvalidValueError, InvalidTypeError) as err:
        raise ConfigError(f"the {cfg.domain} domain refuses its options {kwargs}: {err}") from err


def build_network(domain: Domain, cfg: TrainConfig) -> nn.Module:
    """The config's network, initialised from ``cfg.seed`` without touching the global RNG.

    A named network (``cfg.network``) is built by its factory with ``cfg.network_options``
    (and ``output_scale=1.0`` where it has one: the trainer applies ``cfg.output_scale``);
    otherwise the domain's :meth:`~energyflow.domains.Domain.default_network` with
    ``hidden``/``depth`` and ``cfg.network_options``.

    Raises:
        ConfigError: an option the network does not take, or a value it refuses.
    """
    kwargs = network_kwargs(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        try:
            if cfg.network is not None:
                return NETWORKS.get(cfg.network)(**kwargs)
            return domain.default_network(**kwargs)
        except (InvalidValueError, InvalidTypeError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"network_options {kwargs} are refused: {err}") from err
