"""The run-directory API: load a trained potential, read its metrics, plot it, sample it.

A run directory (written by :class:`energyflow.training.Trainer`) holds::

    run_dir/
      config.toml           the resolved config
      metrics.jsonl         one JSON object per logged step ("kind": "train" | "eval")
      checkpoints/last.pt   model, EMA, optimiser, scheduler, step, RNG states (atomic)
      plots/                loss curves; landscape, samples, trajectories (2-D); sample grids

Example:
    >>> import tempfile
    >>> from energyflow.training import Trainer, resolve_config
    >>> cfg = resolve_config("toy", overrides=dict(steps=2, phase1_steps=2, batch_size=8, eval_every=2,
    ...                      eval_samples=16, hidden=8, log_every=1, device="cpu"))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = Trainer(cfg, d).fit()
    ...     potential, loaded, domain = load_potential(d)
    ...     kinds = [r["kind"] for r in read_metrics(d)]
    >>> loaded == cfg, domain.name, kinds
    (True, 'toy', ['train', 'train', 'eval'])
    >>> sampler_for(cfg).steps    # Langevin with dt = step_size up to sample_t_end
    200
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.domains.base import Domain, PlotUnavailableError
from energyflow.errors import InvalidValueError
from energyflow.energies.potential import Potential
from energyflow.samplers.base import SampleResult
from energyflow.samplers.langevin import Langevin
from energyflow.schedule import EnergyMatchingSchedule
from energyflow.training.build import build_domain, build_network, resolve_device
from energyflow.training.checkpoint import CheckpointError, load_checkpoint
from energyflow.training.config import ConfigError, TrainConfig

__all__ = ["RUN_SAMPLERS", "load_potential", "plot_run", "read_metrics", "run_sampler", "sampler_for"]


def sampler_for(cfg: TrainConfig, *, t_end: float | None = None, method: str | None = None,
                t_start: float = 0.0) -> Langevin:
    """The Energy Matching sampler of a config: Langevin with eps(t) from ``t_start`` to ``t_end``.

    Args:
        cfg (TrainConfig): supplies ``step_size``, ``tau_star``, ``eps_max`` and the
            defaults ``sample_t_end``, ``sample_method``.
        t_end (float | None): end time (default ``cfg.sample_t_end``).
        method (str | None): ``"euler"`` or ``"heun"`` (default ``cfg.sample_method``).
        t_start (float): start time (1.0 for chains started at data).
    """
    return Langevin(
        step_size=cfg.step_size,
        t_end=t_end if t_end is not None else cfg.sample_t_end,
        t_start=t_start,
        schedule=EnergyMatchingSchedule(cfg.tau_star, cfg.eps_max),
        method=method or cfg.sample_method,
    )


#: Iterations the Metropolis refinements of ``energyflow sample --sampler ...`` run
#: (warm-up adapting the step size, then sampling at eps_max).
REFINE_WARMUP, REFINE_STEPS = 100, 100


def _langevin(cfg: TrainConfig, t_end: float) -> tuple[Any, bool]:
    return sampler_for(cfg, t_end=t_end), False


def _flow(cfg: TrainConfig, t_end: float) -> tuple[Any, bool]:
    from energyflow.samplers.flow import GradientFlow

    return GradientFlow(step_size=cfg.step_size, t_end=t_end, method=cfg.sample_method, temperature=0.0), False


def _temperature(cfg: TrainConfig) -> float:
    return max(cfg.eps_max, 1e-6)


def _mala(cfg: TrainConfig, t_end: float) -> tuple[Any, bool]:
    from energyflow.samplers.mala import MALA

    return MALA(step_size=cfg.step_size, temperature=_temperature(cfg), num_warmup=REFINE_WARMUP,
                num_steps=REFINE_STEPS), True


def _hmc(cfg: TrainConfig, t_end: float) -> tuple[Any, bool]:
    from energyflow.samplers.hmc import HMC

    return HMC(step_size=cfg.step_size, temperature=_temperature(cfg), num_warmup=REFINE_WARMUP,
               num_steps=REFINE_STEPS), True


def _nuts(cfg: TrainConfig, t_end: float) -> tuple[Any, bool]:
    from energyflow.samplers.pyro_nuts import PyroNUTS

    return PyroNUTS(temperature=_temperature(cfg), num_samples=REFINE_STEPS, warmup_steps=REFINE_WARMUP), True


#: How a trained run samples with each sampler name: ``name -> recipe(cfg, t_end) ->
#: (sampler, refines)``. Langevin and the gradient flow transport noise to data over
#: ``[0, t_end]``; the Metropolis samplers (``refines``) start from the Energy Matching
#: sampler's output and sample ``exp(-V / eps_max)`` exactly, adapting their step size.
RUN_SAMPLERS: dict[str, Callable[[TrainConfig, float], tuple[Any, bool]]] = {
    "langevin": _langevin, "flow": _flow, "mala": _mala, "hmc": _hmc, "nuts": _nuts,
}


def run_sampler(cfg: TrainConfig, name: str, t_end: float | None = None) -> tuple[Any, bool]:
    """The sampler a trained run uses for ``name`` (see :data:`RUN_SAMPLERS`).

    Returns:
        tuple: the sampler and whether it refines the Energy Matching sampler's output.

    Raises:
        InvalidValueError: an unknown name (the message lists the known ones).

    Example:
        >>> from energyflow.training.config import resolve_config
        >>> sampler, refines = run_sampler(resolve_config("toy"), "mala")
        >>> type(sampler).__name__, refines, sampler.num_warmup
        ('MALA', True, 100)
    """
    if name not in RUN_SAMPLERS:
        raise InvalidValueError(f"unknown sampler {name!r}; choose one of: {', '.join(RUN_SAMPLERS)}")
    return RUN_SAMPLERS[name](cfg, t_end if t_end is not None else cfg.sample_t_end)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (lines cut by a crash are skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_run(run_dir: str | Path, potential: nn.Module, domain: Domain, cfg: TrainConfig,
             sample_fn: Callable[..., SampleResult]) -> list[Path]:
    """Writes the run's plots into ``run_dir/plots`` and returns their paths.

    Loss curves from ``metrics.jsonl``; for 2-D domains the energy landscape, samples
    against data and trajectories; for other domains the domain's own
    :meth:`~energyflow.domains.Domain.plot` of 64 samples against 64 data points, when
    it has one (a domain without a plot gets none).

    Args:
        run_dir (str | Path): the run directory.
        potential (nn.Module): the (EMA) potential, ``(B, *event) -> (B, 1)``.
        domain (Domain): the run's domain.
        cfg (TrainConfig): the run's config.
        sample_fn: ``sample_fn(n, record_every=None) -> SampleResult`` draws from the model.
    """
    from energyflow import plotting

    plots_dir = Path(run_dir) / "plots"
    written = []
    records = [r for r in read_metrics(run_dir) if r.get("kind") == "train"]
    if records:
        phase2 = cfg.warmup_steps if 0 < cfg.warmup_steps < cfg.steps else None
        fig = plotting.plot_loss_curves(records, ["loss", "flow", "cd"], phase2_step=phase2,
                                        title=f"training loss ({cfg.domain}/{cfg.dataset})")
        written.append(plotting.save_figure(fig, plots_dir / "loss.png"))
    if tuple(domain.space.event_shape) == (2,):
        result = sample_fn(min(cfg.eval_samples, 2000), record_every=max(1, round(0.05 / cfg.step_size)))
        samples = result.samples.detach().cpu()
        data = domain.sample_data(samples.shape[0], generator=torch.Generator().manual_seed(cfg.seed + 1))
        device = next(potential.parameters()).device

        def energy_fn(x: Tensor) -> Tensor:
            with torch.no_grad():
                return potential(x.to(device)).cpu()

        lim = float(max(4.0, data.abs().max() * 1.1))
        fig = plotting.plot_energy_landscape(energy_fn, lim=lim, samples=samples, data=data)
        written.append(plotting.save_figure(fig, plots_dir / "landscape.png"))
        fig = plotting.plot_samples(samples, reference=data, reference_label="data")
        written.append(plotting.save_figure(fig, plots_dir / "samples.png"))
        if result.trajectory is not None:
            fig = plotting.plot_trajectories(result.trajectory.cpu())
            written.append(plotting.save_figure(fig, plots_dir / "trajectories.png"))
    else:
        result = sample_fn(64)
        data = domain.sample_data(64, generator=torch.Generator().manual_seed(cfg.seed + 1))
        try:
            fig = domain.plot(tree.to(tree.detach(result.samples), "cpu"), reference=data)
        except PlotUnavailableError:
            fig = None
        if fig is not None:
            written.append(plotting.save_figure(fig, plots_dir / "samples.png"))
    return written


def load_potential(path: str | Path, *, device: str = "cpu", use_ema: bool = True) -> tuple[Potential, TrainConfig, Domain]:
    """Loads a trained potential from a run directory or checkpoint file.

    Args:
        path (str | Path): a run directory (its ``checkpoints/last.pt``) or a checkpoint.
        device (str): where the potential goes (``"auto"``, ``"cpu"``, ``"cuda:1"``, ...).
        use_ema (bool): the EMA weights when the checkpoint has them.

    Returns:
        tuple: ``(potential, config, domain)``; the potential is in eval mode.

    Raises:
        CheckpointError: missing, corrupt or unsafe checkpoint, or a config it cannot rebuild.
    """
    dev = resolve_device(device)  # "auto" and missing devices are resolved before torch.load sees them
    state = load_checkpoint(path, map_location=dev)
    try:
        cfg = TrainConfig(**{k: v for k, v in state["config"].items()})
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(f"the checkpoint's config is invalid: {err}") from err
    cfg = attrs.evolve(cfg, device=device)
    domain = build_domain(cfg)
    net = build_network(domain, cfg)
    potential = Potential(net, scale=cfg.output_scale)
    try:
        if use_ema and state.get("ema") is not None:
            ema_state = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
            potential.load_state_dict(ema_state)
        else:
            net.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint's weights do not fit its network: {err}") from err
    potential.to(dev).eval()
    return potential, cfg, domain
