"""Training configuration: one attrs class, per-domain presets, TOML/YAML files, overrides.

A run is fully described by a preset, an optional config file and CLI overrides,
applied in that order; the resolved config is saved in the run directory.

Example:
    >>> cfg = resolve_config(preset="toy", overrides={"steps": 500, "dataset": "moons"})
    >>> cfg.tau_star, cfg.eps_max, cfg.steps, cfg.dataset
    (0.8, 0.15, 500, 'moons')
    >>> TrainConfig(lr=-1.0)
    Traceback (most recent call last):
    ...
    energyflow.training.config.ConfigError: lr must be > 0, got -1.0
    >>> resolve_config("toy", overrides={"steps": 1.7})     # never rounded to 1
    Traceback (most recent call last):
    ...
    energyflow.training.config.ConfigError: invalid config: TrainConfig.steps must be an integer, got 1.7
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from energyflow.errors import InvalidValueError
from energyflow.registry import COUPLINGS, DOMAINS, NETWORKS, RegistryError, domain_default_preset
from energyflow.validation import integer, real, to_float


class ConfigError(InvalidValueError):
    """A config file or override is invalid; the message names the field."""


def _positive(inst, attr, value) -> None:
    if value is None:
        return
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{attr.name} must be > 0, got {value}")


def _non_negative(inst, attr, value) -> None:
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{attr.name} must be >= 0, got {value}")


def _at_least_two(inst, attr, value) -> None:
    if not (isinstance(value, int) and value >= 2):
        raise ConfigError(f"{attr.name} must be >= 2 (the metrics compare sets of points), got {value}")


def _unit(inst, attr, value) -> None:
    if not (0.0 <= value <= 1.0):
        raise ConfigError(f"{attr.name} must lie in [0, 1], got {value}")


def _unit_open(inst, attr, value) -> None:
    if value is not None and not (0.0 <= value < 1.0):
        raise ConfigError(f"{attr.name} must lie in [0, 1), got {value}")


def _registered(registry):
    def check(inst, attr, value) -> None:
        if value not in registry:
            raise ConfigError(f"{attr.name}: unknown {registry.kind} {value!r}; choose one of: {', '.join(registry.names())}")

    return check


def _choice(*choices):
    def check(inst, attr, value) -> None:
        if value not in choices:
            raise ConfigError(f"{attr.name} must be one of {choices}, got {value!r}")

    return check


def _text(inst, attr, value) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{attr.name} must be a non-empty string, got {value!r}")


def _device_name(inst, attr, value) -> None:
    """The name parses as a torch device (or is "auto"); whether it exists is checked when used."""
    _text(inst, attr, value)
    if value != "auto":
        import torch

        try:
            torch.device(value)
        except RuntimeError:
            raise ConfigError(f"{attr.name}: {value!r} is not a device name; use auto, cpu, cuda, cuda:1, mps, ...") from None


def _optional_name(v):
    return None if v is None or str(v).lower() == "none" else str(v)


def _betas(value, inst, field) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {value!r}")
    return tuple(to_float(b, "TrainConfig.betas") for b in value)


OPTION_TABLES = ("domain_options", "network_options")
"""The config fields that are tables of keyword options (``--set domain_options.KEY=VALUE``)."""

LIFTED_DOMAIN_OPTIONS = ("dataset", "source")
"""Domain options that are also top-level fields; a ``domain_options`` entry moves to the field."""

_SCALARS = (str, bool, int, float)


def _option_value(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be finite (TOML cannot store {value}), got {value}")
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        items = []
        for i, v in enumerate(value):
            if not isinstance(v, _SCALARS):
                _bad_option(v, f"{where}[{i}]")
            items.append(_option_value(v, f"{where}[{i}]"))
        return items
    return _bad_option(value, where)


def _bad_option(value: Any, where: str) -> Any:
    hint = " (TOML has no null: leave the option out to use its default)" if value is None else ""
    raise ConfigError(f"{where} must be a string, number, boolean or a list of them, got {value!r}{hint}")


def _options_table(value: Any, inst: Any, field: attrs.Attribute) -> dict[str, Any]:
    """A dict of keyword options with str keys and TOML-storable values (a copy)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field.name} must be a table of options (name = value), got {value!r}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{field.name}: option names must be identifiers, got {key!r}")
        out[key] = _option_value(v, f"{field.name}.{key}")
    return out


def _domain_class(name: str) -> Any:
    try:
        return DOMAINS.get(name)
    except RegistryError as err:
        raise ConfigError(f"domain: {err}") from None


def domain_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments the config's domain is built with.

    The top-level fields ``dataset`` and ``source`` are passed when the domain lists them
    in its ``options`` (:attr:`energyflow.domains.Domain.options`); ``domain_options``
    adds the rest (it never holds ``dataset`` or ``source``: :class:`TrainConfig` moves
    them to the top-level fields).

    Raises:
        ConfigError: an option the domain does not take; the message names those it does.

    Example:
        >>> domain_kwargs(TrainConfig(domain="toy", domain_options={"test_size": 500}))
        {'dataset': 'moons', 'source': 'gaussian', 'test_size': 500}
    """
    cls = _domain_class(cfg.domain)
    valid = tuple(getattr(cls, "options", ()))
    unknown = sorted(set(cfg.domain_options) - set(valid))
    if unknown:
        raise ConfigError(f"domain_options: the {cfg.domain} domain has no option(s) {', '.join(unknown)}; "
                          f"its options are: {', '.join(valid) or 'none'}")
    kwargs = {k: getattr(cfg, k) for k in LIFTED_DOMAIN_OPTIONS if k in valid}
    kwargs.update(cfg.domain_options)
    return kwargs


def network_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments the config's network is built with.

    For the domain's default network: the top-level ``hidden`` and ``depth`` when the
    domain lists them in ``network_options``, updated by ``cfg.network_options`` (which
    wins). For a named network (``cfg.network``): ``cfg.network_options`` only, checked
    against the factory's ``options``, plus ``output_scale=1.0`` when the factory takes
    one (the trainer applies ``cfg.output_scale`` itself).

    Raises:
        ConfigError: an option the network does not take (the message names those it
            does), or ``output_scale`` among the options (set the top-level field).

    Example:
        >>> network_kwargs(TrainConfig(domain="toy", hidden=32, network_options={"depth": 1}))
        {'hidden': 32, 'depth': 1}
    """
    opts = dict(cfg.network_options)
    if "output_scale" in opts:
        raise ConfigError("network_options.output_scale: set the top-level output_scale instead "
                          "(the trainer scales the network's output; a second scale would apply twice)")
    if cfg.network is not None:
        factory = NETWORKS.get(cfg.network)
        valid = tuple(getattr(factory, "options", ()))
        owner = f"network {cfg.network!r}"
        kwargs: dict[str, Any] = {"output_scale": 1.0} if "output_scale" in valid else {}
        valid = tuple(v for v in valid if v != "output_scale")
    else:
        valid = tuple(getattr(_domain_class(cfg.domain), "network_options", ()))
        owner = f"default network of the {cfg.domain} domain"
        kwargs = {k: getattr(cfg, k) for k in ("hidden", "depth") if k in valid}
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ConfigError(f"network_options: the {owner} has no option(s) {', '.join(unknown)}; "
                          f"its options are: {', '.join(valid) or 'none'}")
    kwargs.update(opts)
    return kwargs


def merge_config_values(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``; the option tables are merged key by key, not replaced.

    Each side is first normalised: ``domain_options.dataset`` / ``.source`` become the
    top-level fields (one side giving both spellings with different values is an
    error), so the later side wins whichever spelling either used.

    Example:
        >>> merge_config_values({"domain_options": {"test_size": 9}, "dataset": "rings"},
        ...                     {"domain_options": {"dataset": "moons"}})
        {'domain_options': {'test_size': 9}, 'dataset': 'moons'}

    Raises:
        ConfigError: an option table that is not a table, or a value given twice.
    """
    out = _lift(base)
    for key, value in _lift(update).items():
        if key in OPTION_TABLES and isinstance(out.get(key), Mapping) and isinstance(value, Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _lift(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in OPTION_TABLES:
        if key in out and out[key] is not None and not isinstance(out[key], Mapping):
            raise ConfigError(f"{key} must be a table of options (name = value), got {out[key]!r}")
    table = dict(out.get("domain_options") or {})
    for key in LIFTED_DOMAIN_OPTIONS:
        if key in table:
            value = table.pop(key)
            if out.get(key) is not None and out[key] != value:
                raise ConfigError(f"{key} is given twice, as {key}={out[key]!r} and domain_options.{key}={value!r}; "
                                  "keep one")
            out[key] = value
    if "domain_options" in out:
        out["domain_options"] = table
    return out


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Everything a training run needs (names follow the paper's symbols in words).

    Attributes:
        domain, dataset, source: what to model and what the flow starts from.
        steps: total optimisation steps; ``phase1_steps`` of them (default: half) are the
            OT warm-up (Algorithm 1), the rest add contrastive divergence (Algorithm 2).
        batch_size, lr, betas, grad_clip, lr_warmup_steps: optimiser settings (Adam).
        lr_schedule: after the warm-up, ``"constant"`` (the paper's) or ``"cosine"``
            (``lr * (1 + cos(pi * step / steps)) / 2``, near 0 at the last step).
        ema_decay, ema_decay_phase2: EMA decay in each phase (None disables EMA).
        coupling: "ot", "sinkhorn" or "independent".
        tau_star, eps_max: the temperature schedule eps(t) and flow-weight ramp.
        step_size, num_langevin_steps: Langevin dt and chain length M for negatives.
        lambda_cd, trim_alpha, clamp_beta: contrastive divergence weight, trim, clamp.
        flow_scale: weight of the flow loss (0 trains a CD-only EBM baseline).
        output_scale: multiplier on V's output.
        network: a named architecture from the NETWORKS registry (``unet_vit``: the paper's
            CIFAR-10 potential); None uses the domain's default network.
        hidden, depth: default network width and depth.
        domain_options: keyword options of the domain (the ones it lists in its
            ``options``, e.g. ``{"test_size": 5000}`` for toy or ``{"split_seed": 1}``
            for images); ``domain_options.dataset`` and ``.source`` are moved to the
            top-level ``dataset`` and ``source`` fields (they win over them). Unknown
            names raise ConfigError when the config is built.
        network_options: keyword options of the network: of the domain's default
            network (its ``network_options``, winning over ``hidden``/``depth``) or of
            the named ``network`` (its factory's ``options``, e.g.
            ``{"base_channels": 64}`` for ``unet_vit``).
        sample_t_end, sample_method: the sampler used for evaluation and `sample`.
        seed: seeds the network's initialisation, the data and the noise streams.
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
        log_every: write a training record to ``metrics.jsonl`` every k steps.
        eval_every: evaluate (``eval_samples`` fresh samples against fresh data) every
            k steps, and at the last step.
        checkpoint_every: write ``checkpoints/last.pt`` every k steps (and always at the
            end, before the final evaluation); ``--resume`` continues from the last one,
            so a crash loses at most ``checkpoint_every - 1`` steps.
        eval_samples: samples drawn for each evaluation.
    """

    domain: str = attrs.field(default="toy", validator=_registered(DOMAINS))
    dataset: str = attrs.field(default="moons", validator=_text)
    source: str = attrs.field(default="gaussian", validator=_text)
    steps: int = attrs.field(default=3000, converter=integer(), validator=_positive)
    phase1_steps: int | None = attrs.field(default=None, converter=integer(optional=True))
    batch_size: int = attrs.field(default=128, converter=integer(), validator=_positive)
    lr: float = attrs.field(default=1e-4, converter=real(), validator=_positive)
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.95), converter=attrs.Converter(_betas, takes_self=True, takes_field=True))
    grad_clip: float | None = attrs.field(default=1.0, converter=real(optional=True), validator=_positive)
    lr_warmup_steps: int = attrs.field(default=100, converter=integer(), validator=_non_negative)
    lr_schedule: str = attrs.field(default="constant", validator=_choice("constant", "cosine"))
    ema_decay: float | None = attrs.field(default=None, converter=real(optional=True), validator=_unit_open)
    ema_decay_phase2: float | None = attrs.field(default=None, converter=real(optional=True), validator=_unit_open)
    coupling: str = attrs.field(default="ot", validator=_registered(COUPLINGS))
    tau_star: float = attrs.field(default=0.8, converter=real(), validator=_unit)
    eps_max: float = attrs.field(default=0.15, converter=real(), validator=_non_negative)
    step_size: float = attrs.field(default=0.01, converter=real(), validator=_positive)
    num_langevin_steps: int = attrs.field(default=200, converter=integer(), validator=_positive)
    lambda_cd: float = attrs.field(default=2.0, converter=real(), validator=_non_negative)
    trim_alpha: float = attrs.field(default=0.0, converter=real(), validator=_unit_open)
    clamp_beta: float | None = attrs.field(default=None, converter=real(optional=True), validator=_positive)
    flow_scale: float = attrs.field(default=1.0, converter=real(), validator=_non_negative)
    output_scale: float = attrs.field(default=1.0, converter=real(), validator=_positive)
    network: str | None = attrs.field(default=None, converter=_optional_name)
    hidden: int = attrs.field(default=256, converter=integer(), validator=_positive)
    depth: int = attrs.field(default=3, converter=integer(), validator=_positive)
    domain_options: dict[str, Any] = attrs.field(
        factory=dict, converter=attrs.Converter(_options_table, takes_self=True, takes_field=True), hash=False)
    network_options: dict[str, Any] = attrs.field(
        factory=dict, converter=attrs.Converter(_options_table, takes_self=True, takes_field=True), hash=False)
    sample_t_end: float = attrs.field(default=2.0, converter=real(), validator=_positive)
    sample_method: str = attrs.field(default="heun", validator=_choice("euler", "heun"))
    seed: int = attrs.field(default=0, converter=integer())
    device: str = attrs.field(default="auto", validator=_device_name)
    log_every: int = attrs.field(default=10, converter=integer(), validator=_positive)
    eval_every: int = attrs.field(default=1000, converter=integer(), validator=_positive)
    checkpoint_every: int = attrs.field(default=500, converter=integer(), validator=_positive)
    eval_samples: int = attrs.field(default=2000, converter=integer(), validator=_at_least_two)

    def __attrs_post_init__(self) -> None:
        lifted = _lift({"domain_options": self.domain_options})
        for key in LIFTED_DOMAIN_OPTIONS:  # domain_options.dataset wins over the field
            if key in lifted:
                _text(self, attrs.fields_dict(TrainConfig)[key], lifted[key])
                object.__setattr__(self, key, lifted[key])  # attrs' documented way in a frozen post-init
        object.__setattr__(self, "domain_options", lifted["domain_options"])
        if self.phase1_steps is not None and not 0 <= self.phase1_steps <= self.steps:
            raise ConfigError(f"phase1_steps ({self.phase1_steps}) must lie in [0, steps={self.steps}]")
        if self.network is not None and self.network not in NETWORKS:
            raise ConfigError(f"network: unknown network {self.network!r}; choose one of: {', '.join(NETWORKS.names())} (or none for the domain's default)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        domain_kwargs(self)  # unknown option names fail here, before any run starts
        network_kwargs(self)

    @property
    def warmup_steps(self) -> int:
        """Steps of phase 1 (OT flow matching only): ``phase1_steps``, or half of ``steps``."""
        return self.phase1_steps if self.phase1_steps is not None else self.steps // 2

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (lists, dicts: what TOML, JSON and a safe checkpoint hold)."""
        d = attrs.asdict(self)
        d["betas"] = list(self.betas)
        return d


# The paper's defaults (DESIGN.md section 3). Step counts are laptop-sized; raise them
# for full-scale runs.
# What every graph preset shares (the rest of each is set in PRESETS).
_GRAPH: dict[str, Any] = dict(
    domain="graph", source="gaussian", coupling="graph_ot", depth=3, tau_star=1.0, step_size=0.01,
    num_langevin_steps=20, eps_max=0.05, lambda_cd=0.1, clamp_beta=1.0, lr=1e-3, ema_decay=0.99,
    ema_decay_phase2=0.99, sample_t_end=1.2, eval_samples=40, eval_every=1000,
)
_GRAPH_CPU: dict[str, Any] = dict(hidden=32, network_options={"edge_hidden": 8, "aggregate": "mean"})
_GRAPH_GPU: dict[str, Any] = dict(
    hidden=128, depth=4, network_options={"edge_hidden": 64, "aggregate": "mean"}, steps=100_000,
    phase1_steps=90_000, num_langevin_steps=50, lr=5e-4, ema_decay=0.999, ema_decay_phase2=0.999,
    eval_every=5000, device="auto",
)

_AAV = dict(domain="protein", source="gaussian", hidden=256, depth=3, tau_star=0.9, step_size=0.01,
            num_langevin_steps=100, eps_max=0.1, lambda_cd=1e-4, clamp_beta=1.0, batch_size=128, lr=1e-3,
            lr_warmup_steps=200, lr_schedule="cosine", ema_decay=0.999, ema_decay_phase2=0.999, steps=6000,
            phase1_steps=5000, sample_method="euler", eval_every=2000, eval_samples=1000, checkpoint_every=1000)

PRESETS: dict[str, dict[str, Any]] = {
    "toy": dict(
        domain="toy", dataset="moons", source="eight_gaussians", tau_star=0.8, step_size=0.01,
        num_langevin_steps=200, eps_max=0.15, lambda_cd=2.0, trim_alpha=0.0, clamp_beta=None,
        batch_size=128, lr=1e-4, ema_decay=None, sample_t_end=2.0,
    ),
    "mnist": dict(
        domain="image", dataset="digits", source="gaussian", hidden=64, depth=2, tau_star=1.0, step_size=0.025, num_langevin_steps=75, eps_max=0.1, lambda_cd=1e-3,
        trim_alpha=0.0, clamp_beta=0.05, batch_size=128, lr=1e-4, ema_decay=0.999,
        ema_decay_phase2=0.99, sample_t_end=2.0,
    ),
    "cifar10": dict(
        domain="image", dataset="cifar10", source="gaussian", network="unet_vit", tau_star=1.0, step_size=0.01, num_langevin_steps=200, eps_max=0.01, lambda_cd=1e-3,
        trim_alpha=0.1, clamp_beta=0.02, batch_size=128, lr=1.2e-3, ema_decay=0.9999,
        ema_decay_phase2=0.99, output_scale=1000.0, sample_t_end=3.25,
    ),
    # Our own presets (the paper has no graphs), all on _GRAPH below. community_small is
    # sized to train in about 30 min on one core (benchmarks/graph_quality.py): aligned OT
    # with the spectral pair features (power_steps), no CD phase (its clamp, beta = 1, binds
    # from the first CD step, so the CD term has no gradient: 200 CD steps cost 10 min and
    # changed nothing). planar/sbm/grid are CPU-sized runs of the larger SPECTRE/GDSS sets
    # (minutes, far from converged); *_gpu are GPU-sized (hours on one GPU; not run here).
    "community_small": dict(_GRAPH, dataset="community_small", hidden=64, steps=4000, phase1_steps=4000,
                            batch_size=128, eval_samples=20, network_options={"power_steps": 4}),
    "planar": dict(_GRAPH, dataset="planar", **_GRAPH_CPU, steps=800, phase1_steps=800, batch_size=32),
    "sbm": dict(_GRAPH, dataset="sbm", **_GRAPH_CPU, steps=400, phase1_steps=400, batch_size=16),
    "grid": dict(_GRAPH, dataset="grid", **_GRAPH_CPU, coupling="ot", steps=200, phase1_steps=200, batch_size=8,
                 eval_samples=20),
    "planar_gpu": dict(_GRAPH, dataset="planar", **_GRAPH_GPU, batch_size=64),
    "sbm_gpu": dict(_GRAPH, dataset="sbm", **_GRAPH_GPU, batch_size=32),
    # Molecules (issue 12) on the graph recipe: aligned OT on atoms and bonds, flow matching
    # only, cosine-decayed LR. qm9 is sized for 50 min on 2 CPU cores
    # (benchmarks/molecule_quality.py). No CD phase: on QM9 its clamp (beta = 1) binds from the
    # first CD step (data energies ~130 below the Langevin negatives'), so the CD term has no
    # gradient and its 20 Langevin steps per batch only cost time (2.4 s per step against 0.27).
    "qm9": dict(_GRAPH, domain="molecule", dataset="qm9", hidden=48, depth=4, steps=10_500, phase1_steps=10_500,
                batch_size=128, lr_schedule="cosine", ema_decay=0.999, ema_decay_phase2=0.999, eval_samples=500,
                eval_every=100_000, checkpoint_every=500),
    "qm9_gpu": dict(_GRAPH, domain="molecule", dataset="qm9", hidden=256, depth=6, steps=200_000,
                    phase1_steps=200_000, batch_size=512, lr=5e-4, lr_schedule="cosine", ema_decay=0.999,
                    ema_decay_phase2=0.999, eval_samples=2000, eval_every=10_000, device="auto"),
    # AAV design (issue 13): the paper's tau* 0.9, eps_max 0.1, dt 0.01, lambda_cd 1e-4, clamp 1.0 on the VAE
    # latents, with M = 100 Langevin steps for the negatives (the paper: 200) and an MLP potential for a CPU.
    # Phase 2 draws half the negatives from noise, as the paper says (its code starts them all at data and
    # switches CD on after its last step, i.e. never).
    "aav_medium": dict(_AAV, dataset="medium", sample_t_end=1.7),
    # The paper's own numbers (M = 200, lr 1e-4 constant, 10k steps) on the medium task: a GPU's preset.
    "aav": dict(_AAV, dataset="medium", sample_t_end=1.7, num_langevin_steps=200, lr=1e-4, lr_schedule="constant",
                steps=10_000, phase1_steps=9000, device="auto"),
    "aav_hard": dict(_AAV, dataset="hard", sample_t_end=1.3),
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file must be .toml, .yaml, .yml or .json, got {path.name}")
    except ConfigError:
        raise
    except Exception as err:  # parse errors from three libraries
        raise ConfigError(f"cannot parse {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table of settings, got {type(data).__name__}")
    return data  # a "preset" key is kept: resolve_config applies it below the file's values


def _preset_values(preset: str, domain: str | None, origin: str) -> dict[str, Any]:
    """The values of ``preset``, checked against the domain the user asked for."""
    if isinstance(preset, str) and preset not in PRESETS and preset.replace("-", "_") in PRESETS:
        preset = preset.replace("-", "_")  # aav-medium on the command line
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = PRESETS[preset]
    preset_domain = values["domain"]
    if preset_domain not in DOMAINS:
        raise ConfigError(
            f"preset {preset!r} is for the {preset_domain} domain, which this version of energyflow does not have "
            f"yet; domains: {', '.join(DOMAINS.names())}"
        )
    if domain is not None and domain != preset_domain:
        raise ConfigError(f"preset {preset!r}{origin} is for the {preset_domain} domain, not {domain!r}; "
                          f"drop one of them, or use the {domain} domain's preset")
    return values


def default_preset(domain: str) -> str:
    """The preset a run of ``domain`` starts from when none is named.

    Each domain declares it where it registers
    (:func:`energyflow.registry.register_domain`); the domain's module is not imported.

    Example:
        >>> default_preset("image")
        'mnist'

    Raises:
        ConfigError: the domain is unknown.
    """
    if domain not in DOMAINS:
        raise ConfigError(f"domain: unknown domain {domain!r}; choose one of: {', '.join(DOMAINS.names())}")
    return domain_default_preset(domain)


def resolve_config(
    preset: str | None = None, file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """preset < file < overrides, validated.

    The option tables (``domain_options``, ``network_options``) merge key by key across
    the three (:func:`merge_config_values`).

    Every preset names its domain. A file that sets every field (what
    :func:`save_config` writes) is taken as it is, with no preset under it. Without a
    preset (as argument or as the file's ``preset`` key) the run starts from its domain's
    default preset (``toy`` for the toy domain, ``mnist`` for images), the domain being
    the one the overrides or the file name, else ``toy``.

    Example:
        >>> resolve_config(overrides={"domain": "image"}).dataset     # the image domain's preset
        'digits'
        >>> resolve_config("mnist", overrides={"domain": "toy"})
        Traceback (most recent call last):
        ...
        energyflow.training.config.ConfigError: preset 'mnist' is for the image domain, not 'toy'; drop one of them, or use the toy domain's preset

    Raises:
        ConfigError: unknown preset or field, a preset for another (or a missing)
            domain, or a value a validator refuses.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    file_values = load_config_file(file) if file is not None else {}
    file_preset = file_values.pop("preset", None)
    domain = overrides.get("domain", file_values.get("domain"))
    origin = ""
    # A file that sets every field (a run's saved config.toml) is complete: no preset is
    # laid under it, or the default preset's option tables would merge into its own (a
    # saved grid run would gain community_small's network options).
    every_field = {a.name for a in attrs.fields(TrainConfig)}
    complete = preset is None and file_preset is None and set(file_values) >= every_field
    if preset is None and file_preset is not None:
        preset, origin = file_preset, f" (the preset key of {file})"
    elif preset is None and not complete:
        preset = default_preset(domain if domain is not None else "toy")
    base = {} if complete else _preset_values(preset, domain, origin)
    values = merge_config_values(base, file_values)
    return build_config(merge_config_values(values, overrides))


def build_config(values: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a dict of field values (no preset applied).

    Raises:
        ConfigError: an unknown field, or a value a converter or validator refuses
            (the message names the field).
    """
    known = {a.name for a in attrs.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
    try:
        return TrainConfig(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # the strict converters name the field
        raise ConfigError(f"invalid config: {err}") from err


CONFIG_HEADER = "# resolved energyflow training config"


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Writes the resolved config as TOML-compatible JSON-ish text (atomic)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, v in cfg.to_dict().items():
        if v is None:
            v = "none"  # TOML has no null; the optional-float converters read "none" back as None
        if isinstance(v, dict):  # an inline table; option values are TOML-storable (see _option_value)
            lines.append(f"{k} = {{" + ", ".join(f"{json.dumps(ok)} = {json.dumps(ov)}" for ok, ov in v.items()) + "}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-")
    with os.fdopen(fd, "w") as fh:
        fh.write(CONFIG_HEADER + "\n" + "\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
