"""The energyflow command line: train, sample, condition, evaluate, demo.

Every command turns a user mistake (an energyflow error: bad argument, missing or
unsafe checkpoint, invalid config, missing device; or an OS error about a path) into
one line on stderr and exit code 2. Anything else is a bug in energyflow: it keeps its
traceback, says so, and exits with code 1. ``energyflow --debug COMMAND ...`` re-raises
every error with its traceback.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from energyflow.errors import EnergyflowError, InvalidValueError, OutputPathError

app = typer.Typer(
    name="energyflow",
    help="Energy Matching: train a scalar potential, sample it, evaluate it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)  # no hard wraps: printed paths stay copy-pastable when piped
err_console = Console(stderr=True, soft_wrap=True)

# The longest sampler run a command accepts (the presets take 200-325 steps).
MAX_SAMPLER_STEPS = 100_000
# AIS with fewer levels is importance sampling from the Gaussian proposal, or close to it:
# on a 600-step 8x8 digits model 0 levels miss log Z by 438 nats, 10 by 290, 200 by 22
# (against 800 levels; benchmarks/ais_levels.py). A low effective sample size flags the
# same problem at any count.
MIN_AIS_STEPS = 10
LOW_AIS_ESS = 0.1  # warn when the AIS effective sample size is below this fraction of the chains

_settings = {"debug": False}


def _rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _quiet_unless_rank_zero() -> None:
    """Under torchrun only rank 0 prints progress, tables and paths (errors print on every rank)."""
    console.quiet = _rank() != 0


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of every error, user errors included."),
) -> None:
    """Energy Matching: train a scalar potential, sample it, evaluate it."""
    _settings["debug"] = debug


def _is_path_error(err: BaseException) -> bool:
    """An OS error about a file or folder the user named (not, say, a failed socket)."""
    return isinstance(err, OSError) and (
        isinstance(err, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError))
        or getattr(err, "filename", None) is not None
    )


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, OSError) and not isinstance(err, EnergyflowError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return text.splitlines()[0] if text else type(err).__name__


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Runs a command: user errors become one line and exit 2, bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as err:
            if _settings["debug"]:
                raise
            prefix = f"[rank {_rank()}] " if _rank() != 0 else ""
            if isinstance(err, EnergyflowError) or _is_path_error(err):
                err_console.print(f"[bold red]error:[/] {prefix}{_one_line(err)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            import traceback

            traceback.print_exception(err)
            err_console.print(
                f"[bold red]internal error:[/] {prefix}this is a bug in energyflow, not a problem with your input "
                f"({type(err).__name__}). Please report it with the traceback above.",
                highlight=False, soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as config values (JSON where the value parses, else the text).

    ``--set domain_options.dataset=moons`` (or ``network_options.KEY=VALUE``) sets one
    entry of an option table; ``--set domain_options='{"dataset": "moons"}'`` sets several.
    Entries of one table from several ``--set`` merge.
    """
    from energyflow.training.config import OPTION_TABLES, merge_config_values

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidValueError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip()
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        table, dot, option = key.partition(".")
        if dot:
            if table not in OPTION_TABLES or not option:
                raise InvalidValueError(f"--set {key}=...: only {' and '.join(OPTION_TABLES)} take a dotted KEY.OPTION")
            parsed, key = {option: parsed}, table
        out = merge_config_values(out, {key: parsed})
    return out


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _run_training(trainer, total: int) -> Any:
    start_step, t0 = trainer.step, time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("phase 1", total=total, completed=trainer.step, loss="-", speed="")

        def on_step(record: dict[str, Any]) -> None:
            if record.get("kind") == "eval":
                metrics = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("kind", "step"))
                progress.console.print(f"step {record['step']}: {metrics}")
                return
            done = record["step"] - start_step
            rate = done / max(time.perf_counter() - t0, 1e-9)
            progress.update(
                task, completed=record["step"], description=f"phase {record['phase']}",
                loss=f"{record['loss']:.4g}", speed=f"{rate:.1f} it/s",
            )

        return trainer.fit(callback=on_step)


@app.command()
@friendly
def train(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory to create."),
    domain: Optional[str] = typer.Option(None, help="Domain: toy, image, graph or molecule (each brings its default preset)."),
    dataset: Optional[str] = typer.Option(None, help="Data set of the domain (e.g. moons, digits, community_small, planar)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Your own data file (graph domain: a .pt of PyG Data graphs; molecule domain: a file of SMILES)."),
    source: Optional[str] = typer.Option(None, help="Where the flow starts (gaussian or a toy set)."),
    preset: Optional[str] = typer.Option(None, help="Preset: toy, mnist, cifar10, community_small, qm9, ... (default: the domain's)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML or YAML config file."),
    steps: Optional[int] = typer.Option(None, help="Total training steps."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:1, ..."),
    set_: list[str] = typer.Option(
        [], "--set", help="Any config field: --set eps_max=0.1, --set domain_options.test_size=5000 (repeatable).",
    ),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory."),
) -> None:
    """Train a potential by Energy Matching."""
    from energyflow.outputs import check_output_dir
    from energyflow.training import Trainer, resolve_config
    from energyflow.training.checkpoint import load_checkpoint
    from energyflow.training.config import CONFIG_HEADER, build_config, merge_config_values

    _quiet_unless_rank_zero()
    overrides = dict(domain=domain, dataset=dataset, source=source, steps=steps, batch_size=batch_size,
                     lr=lr, seed=seed, device=device)
    overrides.update(_parse_overrides(set_))
    if data is not None:
        if not data.is_file():
            raise FileNotFoundError(f"--data {data}: no such file")
        overrides.setdefault("domain_options", {})["path"] = str(data.resolve())
    if resume is not None:
        if out is not None and out != resume:
            raise InvalidValueError("give either --out for a new run or --resume for an existing one, not both")
        if preset is not None or config is not None:
            raise InvalidValueError("--resume continues a run with its saved config; --preset and --config apply to new runs")
        state = load_checkpoint(resume)
        cfg = build_config(merge_config_values(state["config"], {k: v for k, v in overrides.items() if v is not None}))
        if cfg.steps < int(state["step"]):
            raise InvalidValueError(
                f"{resume} is at step {int(state['step'])}; --steps {cfg.steps} is below it "
                f"(give --steps {int(state['step'])} or more to continue)"
            )
        run_dir = check_output_dir(resume, "--resume")
        trainer = Trainer(cfg, run_dir, resume=True)
        console.print(f"resuming {run_dir} at step {trainer.step}/{cfg.steps}")
    else:
        if out is None:
            raise InvalidValueError("--out is required for a new run (or use --resume DIR)")
        if (out / "checkpoints" / "last.pt").exists():
            raise OutputPathError(f"{out} already holds a run; continue it with --resume {out} or pick another --out")
        own_config = out / "config.toml"
        if own_config.is_file() and not own_config.read_text(errors="replace").startswith(CONFIG_HEADER):
            raise OutputPathError(f"{own_config} is not an energyflow run config and the run would overwrite it; "
                                  "pick another --out")
        cfg = resolve_config(preset, config, overrides)
        run_dir = check_output_dir(out, "--out")
        trainer = Trainer(cfg, run_dir)
        for old in trainer.set_aside:
            console.print(f"note: {run_dir} held the log of an earlier, unfinished run; it is now {old}")
    result = _run_training(trainer, cfg.steps)
    _print_metrics(result.eval_metrics, title=f"evaluation at step {result.step}")
    console.print(f"run directory: [bold]{result.run_dir}[/]")
    for p in result.plots:
        console.print(f"plot: {p}")


def _print_metrics(metrics: dict[str, float], title: str) -> None:
    if not metrics:
        return
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.5g}")
    console.print(table)


def _likelihood_metrics(potential, cfg, domain, *, nll: bool, ais_chains: int, ais_steps: int, lid: int,
                        lid_threshold: float, seed: int, device: str) -> dict[str, float]:
    """NLL (nats, and per dimension) of held-out data and LID statistics of a loaded run.

    The density is the model's Boltzmann density ``exp(-V / eps_max) / Z``; held-out data
    are the domain's :meth:`~energyflow.domains.Domain.test_data` (the test split, or the
    toy domains' fixed-seed held-out draw).
    """
    import torch

    from energyflow.likelihood import local_intrinsic_dimension, log_partition, negative_log_likelihood
    from energyflow.training.build import resolve_device

    dev = resolve_device(device)
    held_out = domain.test_data().to(dev)
    event = tuple(domain.space.event_shape)
    out: dict[str, float] = {}
    if nll:
        if not cfg.eps_max > 0:
            raise InvalidValueError("--nll needs a run with eps_max > 0: its density is exp(-V / eps_max)")
        with Progress(TextColumn("AIS log Z"), BarColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
            bar.add_task("ais", total=None)
            est = log_partition(potential, dim=event, temperature=cfg.eps_max, num_chains=ais_chains,
                                num_steps=ais_steps, generator=torch.Generator(dev).manual_seed(seed + 1))
        if est.ess < LOW_AIS_ESS * ais_chains:
            console.print(
                f"[yellow]warning:[/] the AIS effective sample size is {est.ess:.1f} of {ais_chains} chains: log Z is "
                "unreliable and likely too low, which makes the NLL too optimistic; raise --ais-steps (and --ais-chains)",
                highlight=False,
            )
        value, se = negative_log_likelihood(potential, held_out, est, temperature=cfg.eps_max)
        out.update(nll=value, nll_stderr=se, nll_per_dim=value / math.prod(event), log_z=est.log_z,
                   log_z_stderr=est.stderr, ais_ess=est.ess, nll_points=float(held_out.shape[0]))
    if lid:
        dims = local_intrinsic_dimension(potential, held_out[:lid], relative_threshold=lid_threshold).float()
        out.update(lid_mean=float(dims.mean()), lid_median=float(dims.median()), lid_min=float(dims.min()),
                   lid_max=float(dims.max()), lid_points=float(dims.shape[0]))
    return out


def _check_t_end(t_end: Optional[float]) -> None:
    if t_end is not None and not (math.isfinite(t_end) and t_end > 0):
        raise InvalidValueError(f"--t-end must be a finite number > 0, got {t_end:g}")


VALENCE_HELP = ("Molecule runs: let the valence energy guide the transport with this weight (0: off; 1 took QM9's "
                "validity without correction to 98 % at FCD 4.1 on 1,000 x 3 samples, V alone 72-75 %; "
                "see energyflow.domains.molecule.valence).")


def _draw(run: Path, n: int, t_end: Optional[float], sampler: str, seed: int, device: str, record_every=None,
          valence: float = 0.0):
    import torch

    from energyflow import tree
    from energyflow.field import compile as compile_field
    from energyflow.training.build import resolve_device
    from energyflow.training.run import load_potential, run_sampler, sampler_for

    if n <= 0:
        raise InvalidValueError(f"--n must be positive, got {n}")
    _check_t_end(t_end)
    dev = resolve_device(device)
    potential, cfg, domain = load_potential(run, device=device)
    chosen, refines = run_sampler(cfg, sampler, t_end)  # refuses an unknown name before any work
    if valence < 0:
        raise InvalidValueError(f"--valence must be >= 0, got {valence:g}")
    if valence > 0:
        from energyflow.domains.molecule.domain import MoleculeDomain

        if not isinstance(domain, MoleculeDomain):
            raise InvalidValueError(f"--valence applies to molecule runs; {run} is a {cfg.domain} run")
        if sampler != "langevin":
            raise InvalidValueError(f"--valence guides the Energy Matching sampler (--sampler langevin), not {sampler}")
        from energyflow.domains.molecule.valence import valence_sampler

        chosen = valence_sampler(chosen, valence, scale=domain.scale)
    t_end = t_end if t_end is not None else cfg.sample_t_end
    em = sampler_for(cfg, t_end=t_end)
    if em.steps > MAX_SAMPLER_STEPS:
        raise InvalidValueError(
            f"--t-end {t_end:g} would take {em.steps:,} sampler steps of dt={cfg.step_size:g} (the run's "
            f"tau_s={cfg.sample_t_end:g} takes {sampler_for(cfg).steps:,}); at most {MAX_SAMPLER_STEPS:,} are allowed"
        )
    field = compile_field(potential, domain.space)
    gen = torch.Generator(dev).manual_seed(seed)
    x0 = tree.to(domain.sample_source(n, generator=torch.Generator().manual_seed(seed)), dev)
    if refines:  # Metropolis samplers refine the Energy Matching sampler's output at eps_max
        x0 = em.run(field, x0, generator=gen).samples
    return chosen.run(field, x0, generator=gen, record_every=record_every), potential, cfg, domain


@app.command()
@friendly
def sample(
    run: Path = typer.Argument(..., help="Run directory or checkpoint file."),
    n: int = typer.Option(2000, "--n", help="Number of samples."),
    out: Path = typer.Option(Path("samples.pt"), "--out", "-o",
                             help="Output file (.pt: tensors, or for graphs a list of PyG Data); never a checkpoint."),
    t_end: Optional[float] = typer.Option(None, "--t-end", help="Sampler end time tau_s (default: the run's)."),
    sampler: str = typer.Option("langevin", help="langevin, flow, mala, hmc or nuts."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, ..."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write a plot next to the output (same name, .png)."),
    valence: float = typer.Option(0.0, "--valence", help=VALENCE_HELP),
) -> None:
    """Draw samples from a trained run; writes a tensor file (graphs: PyG Data) and a plot."""
    import torch

    from energyflow import tree

    from energyflow.outputs import check_output_file

    check_output_file(out, "--out")
    plot_path = out.with_suffix(".png")
    if plot and plot_path == out:
        raise OutputPathError(f"--out {out} is where the plot goes; name the tensor file .pt (or pass --no-plot)")
    if plot:
        check_output_file(plot_path, "the plot next to --out")
    result, _, cfg, domain = _draw(run, n, t_end, sampler, seed, device, valence=valence)
    samples = tree.to(tree.detach(result.samples), "cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = domain.save_samples(samples, out)
    console.print(f"wrote {written} to [bold]{out}[/]")
    if result.mean_acceptance is not None:
        console.print(f"mean acceptance rate: {result.mean_acceptance:.3f}, divergences: {result.num_divergences}")
    if plot:
        from energyflow import plotting
        from energyflow.domains.base import PlotUnavailableError

        count = tree.batch_size(samples)
        big = isinstance(samples, dict) or samples.dim() > 2  # images and graphs: a grid's worth of data
        ref = domain.sample_data(min(count, 64) if big else count, generator=torch.Generator().manual_seed(seed + 1))
        try:
            path = plotting.save_figure(domain.plot(samples, reference=ref), plot_path)
            console.print(f"plot: {path}")
        except PlotUnavailableError as err:
            console.print(f"no plot: {err}")


@app.command()
@friendly
def evaluate(
    run: Path = typer.Argument(..., help="Run directory or checkpoint file."),
    n: int = typer.Option(2000, "--n", help="Number of fresh samples."),
    t_end: Optional[float] = typer.Option(None, "--t-end", help="Sampler end time tau_s."),
    sampler: str = typer.Option("langevin", help="Sampler (see `sample`)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, ..."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON."),
    nll: bool = typer.Option(False, "--nll/--no-nll", help="Also the NLL of held-out data under exp(-V/eps_max), log Z by AIS."),
    ais_chains: int = typer.Option(512, "--ais-chains", help="AIS chains for --nll (>= 2)."),
    ais_steps: int = typer.Option(200, "--ais-steps", help=f"AIS temperature levels for --nll (>= {MIN_AIS_STEPS})."),
    lid: int = typer.Option(0, "--lid", help="Also the local intrinsic dimension at this many held-out points."),
    lid_threshold: float = typer.Option(0.1, "--lid-threshold", help="LID: curvature below this fraction of the largest is flat."),
    valence: float = typer.Option(0.0, "--valence", help=VALENCE_HELP),
) -> None:
    """The domain's metrics on fresh samples against its held-out data; optionally NLL and LID."""
    from energyflow.outputs import check_output_file

    if lid < 0:
        raise InvalidValueError(f"--lid must be >= 0, got {lid}")
    if nll and ais_steps < MIN_AIS_STEPS:
        raise InvalidValueError(
            f"--ais-steps must be >= {MIN_AIS_STEPS}, got {ais_steps}: with fewer annealing levels AIS is plain "
            "importance sampling and its log Z, and so the NLL, is biased low (the default is 200)"
        )
    if nll and ais_chains < 2:
        raise InvalidValueError(f"--ais-chains must be >= 2 for a standard error, got {ais_chains}")
    if json_out is not None:
        check_output_file(json_out, "--json")
    result, potential, cfg, domain = _draw(run, n, t_end, sampler, seed, device, valence=valence)
    from energyflow import tree

    samples = tree.to(tree.detach(result.samples), "cpu")
    metrics = {k: float(v) for k, v in domain.metrics(samples).items()}  # vs held-out data
    metrics["grad_evals_per_sample"] = float(result.num_grad_evals)
    if nll or lid:
        metrics.update(_likelihood_metrics(potential, cfg, domain, nll=nll, ais_chains=ais_chains,
                                           ais_steps=ais_steps, lid=lid, lid_threshold=lid_threshold,
                                           seed=seed, device=device))
    _print_metrics(metrics, title=f"{cfg.domain}/{cfg.dataset}: {n} samples, {sampler}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(metrics, indent=2) + "\n")


@app.command()
@friendly
def condition(
    run: Path = typer.Argument(..., help="Run directory or checkpoint of an image or graph model."),
    task: str = typer.Option("inpaint_box", help="Images: inpaint_box, inpaint_random, inpaint_half, denoise or deblur; "
                                                 "graphs: complete; molecules: property."),
    out: Path = typer.Option(Path("runs/condition"), "--out", "-o", help="Folder for grids, samples and metrics."),
    n_images: int = typer.Option(8, "--n-images", help="Held-out images (or graphs) to measure and reconstruct; --task property: molecules to design."),
    hide: float = typer.Option(0.3, "--hide", help="--task complete: fraction of each graph's node pairs hidden."),
    target: str = typer.Option("qed=0.9", "--target",
                               help="--task property: NAME=VALUE, qed (any molecules) or alpha / gap (QM9)."),
    regressor_steps: int = typer.Option(2000, "--regressor-steps",
                                        help="--task property: training steps of the property regressors (cached)."),
    chains: int = typer.Option(16, help="Posterior draws per image (their mean is the MMSE estimate)."),
    noise: Optional[float] = typer.Option(None, help="Measurement noise std (default: per task)."),
    repulsion: Optional[float] = typer.Option(None, help="Repulsion bandwidth sigma among chains (default 2.0, measured on digits)."),
    compare_repulsion: bool = typer.Option(
        True, "--compare-repulsion/--no-repulsion", help="Also sample with repulsion among the chains and compare (default).",
    ),
    t_end: Optional[float] = typer.Option(None, "--t-end", help="Sampler end time tau_s (default: the run's)."),
    guidance: bool = typer.Option(
        True, "--guidance/--no-guidance",
        help="Let the measurement guide the transport through its predicted endpoint (default); "
             "--no-guidance is the paper's sampler, where it acts only from tau* on.",
    ),
    guidance_weight: Optional[float] = typer.Option(
        None, "--guidance-weight", help="Weight of -log p(y|x) under guidance (default eps_max: the exact posterior).",
    ),
    unknown_noise: bool = typer.Option(
        False, "--unknown-noise",
        help="Blind denoising (--task denoise): the sampler is not told --noise (the std the measurements are made "
             "with) and samples it with the image, sigma ~ HalfNormal(0.5); compared with the known-noise posterior.",
    ),
    refine: str = typer.Option("hmc", "--refine", help="With --unknown-noise: the kernel at eps_max, hmc or mala."),
    warmup: int = typer.Option(300, "--warmup", help="With --unknown-noise: warm-up iterations of the kernel at eps_max."),
    samples: int = typer.Option(600, "--samples", help="With --unknown-noise: iterations after the warm-up."),
    thin: int = typer.Option(12, "--thin", help="With --unknown-noise: keep every thin-th iteration as a draw."),
    prior_temperature: str = typer.Option(
        "auto", "--prior-temperature",
        help="With --unknown-noise: the prior's temperature: auto (fit exp(-V/T) to the training images by maximum "
             "likelihood, about a minute for digits), eps-max (the run's), or a number.",
    ),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, ..."),
) -> None:
    """Solve an inverse problem: inpainting, denoising, deblurring (image runs) or graph completion (graph runs)."""
    from energyflow.inverse import condition_run
    from energyflow.outputs import check_output_dir

    if chains < 1:
        raise InvalidValueError(f"--chains must be >= 1, got {chains}")
    _check_t_end(t_end)
    if task == "complete":
        _graph_completion(run, out, n_images, chains, hide, seed, device)
        return
    if task == "property":
        _molecule_design(run, out, target, n_images, repulsion, guidance, guidance_weight, regressor_steps, seed,
                         device)
        return
    if unknown_noise:
        _blind_condition(run, task, out, n_images, chains, noise, t_end, refine, warmup, samples, thin, prior_temperature,
                         seed, device)
        return
    check_output_dir(out, "--out")
    report = condition_run(
        str(run), task, str(out), num_images=n_images, chains=chains, noise=noise,
        repulsion_sigma=repulsion, compare_repulsion=compare_repulsion, t_end=t_end, seed=seed, device=device,
        guidance=guidance, guidance_weight=guidance_weight,
    )
    table = Table(title=f"{task}: {n_images} held-out images, {chains} draws each")
    for col in ("method", "PSNR (region, dB)", "PSNR of mean", "SSIM", "diversity"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for method, m in report.metrics.items():
        cells = [m.get(k) for k in ("psnr", "psnr_mean", "ssim", "diversity")]
        table.add_row(method, *("-" if v is None else f"{v:.3f}" for v in cells))
    console.print(table)
    for path in report.files:
        console.print(f"wrote {path}")



def _graph_completion(run: Path, out: Path, n_graphs: int, chains: int, hide: float, seed: int, device: str) -> None:
    from energyflow.domains.graph.conditional import completion_run
    from energyflow.outputs import check_output_dir

    check_output_dir(out, "--out")
    report = completion_run(str(run), str(out), fraction=hide, chains=chains, num_graphs=n_graphs, seed=seed,
                            device=device)
    s = report["scores"]
    table = Table(title=f"graph completion: {report['graphs']} held-out graphs, {hide:.0%} of pairs hidden, "
                        f"{chains} draws each")
    for col in ("predictor", "accuracy (hidden)", "AUC (hidden)", "known kept"):
        table.add_column(col, justify="right" if col != "predictor" else "left")
    table.add_row("Energy Matching posterior", f"{s.hidden_accuracy:.3f}", f"{s.hidden_auc:.3f}", f"{s.known_kept:.3f}")
    table.add_row("training edge frequency", f"{s.baseline_accuracy:.3f}", "0.500", "-")
    table.add_row("known common neighbours", "-", f"{s.common_neighbours_auc:.3f}", "-")
    console.print(table)
    for path in report["files"]:
        console.print(f"wrote {path}")


def _molecule_design(run: Path, out: Path, target: str, n: int, repulsion: Optional[float], guidance: bool,
                     guidance_weight: Optional[float], regressor_steps: int, seed: int, device: str) -> None:
    from energyflow.domains.molecule.property import property_run
    from energyflow.outputs import check_output_dir

    if regressor_steps < 1:
        raise InvalidValueError(f"--regressor-steps must be >= 1, got {regressor_steps}")
    check_output_dir(out, "--out")
    report = property_run(str(run), str(out), target, n=n, seed=seed, repulsion=repulsion, guidance=guidance,
                          guidance_weight=guidance_weight, device=device,
                          regressor_options={"steps": regressor_steps})
    s = report["summary"]
    table = Table(title=f"property design: {s['property']} = {s['target']:g}, {s['n']} molecules "
                        f"(oracle: {s['oracle']}; zeta {s['zeta']:.3g})")
    for col in ("samples", "MAE to target (valid)", "validity", "unique"):
        table.add_column(col, justify="right" if col != "samples" else "left")
    table.add_row("conditioned (V + observation)", f"{s['mae']:.3f}", f"{s['validity']:.3f}", f"{s['unique']:.3f}")
    table.add_row("unconditional (V)", f"{s['control_mae']:.3f}", f"{s['control_validity']:.3f}",
                  f"{s['control_unique']:.3f}")
    table.add_row("training distribution", f"{s['training_mae']:.3f}", "-", "-")
    console.print(table)
    reg = s["regressor_metrics"]
    console.print(f"guidance regressor: held-out MAE {reg.get('test_mae', float('nan')):.4f} "
                  f"(predicting the mean: {reg.get('test_mean_mae', float('nan')):.4f}), "
                  f"Spearman {reg.get('test_spearman', float('nan')):.3f}")
    for path in report["files"]:
        console.print(f"wrote {path}")


def _blind_condition(run: Path, task: str, out: Path, n_images: int, chains: int, noise: Optional[float],
                     t_end: Optional[float], refine: str, warmup: int, samples: int, thin: int, prior_temperature: str,
                     seed: int, device: str) -> None:
    """``condition --unknown-noise``: blind denoising, its table, sigma's diagnostics and its files.

    After the table of sigma and the PSNRs it prints ArviZ's summary of sigma (one row per
    image: mean, sd, HDI, MCSE, bulk and tail ESS, R-hat over that image's chains) and each
    energyflow warning of the runs (R-hat > 1.01, ESS < 400, divergences, a collapsed step
    size) as one line; the trace plot of sigma is among the files written.
    """
    import warnings

    from rich.markup import escape

    from energyflow.diagnostics import EnergyflowWarning
    from energyflow.inverse import REFINERS, blind_condition_run, parse_prior_temperature
    from energyflow.outputs import check_output_dir

    if task.lower().replace("-", "_") != "denoise":
        raise InvalidValueError(f"--unknown-noise applies to --task denoise only, got --task {task}")
    if noise is not None and not (noise > 0 and math.isfinite(noise)):
        raise InvalidValueError(f"--noise must be a finite number > 0, got {noise}")
    if refine not in REFINERS:
        raise InvalidValueError(f"--refine must be one of {', '.join(REFINERS)}, got {refine!r}")
    if warmup < 0:
        raise InvalidValueError(f"--warmup must be >= 0, got {warmup}")
    if samples < 0:
        raise InvalidValueError(f"--samples must be >= 0, got {samples}")
    if thin < 1 or (samples and thin > samples):
        raise InvalidValueError(f"--thin must be >= 1 and at most --samples ({samples}), got {thin}")
    try:
        temperature = parse_prior_temperature(prior_temperature)
    except InvalidValueError as err:
        raise InvalidValueError(f"--prior-temperature: {err}") from None
    if n_images < 1:
        raise InvalidValueError(f"--n-images must be >= 1, got {n_images}")
    check_output_dir(out, "--out")
    ours: list = []  # energyflow's warnings, printed as lines below; other warnings pass through
    with warnings.catch_warnings():
        warnings.simplefilter("always", EnergyflowWarning)
        show = warnings.showwarning

        def keep(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, EnergyflowWarning):
                ours.append(f"{category.__name__}: {message}")
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = keep
        report = blind_condition_run(str(run), str(out), num_images=n_images, chains=chains, noise=noise, t_end=t_end,
                                     num_warmup=warmup, num_samples=samples, thin=thin, prior_temperature=temperature,
                                     refine=refine, seed=seed, device=device)
    s = report.summary
    table = Table(title=f"blind denoising: {n_images} held-out images, true sigma {s['sigma_true']:g} (not told to the "
                        f"sampler), {s['draws_per_image']} draws each")
    for col in ("image", "sigma truth", "posterior mean", "90% interval", "covered?", "PSNR blind (dB)",
                "PSNR known sigma (dB)", "PSNR solve (dB)"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in report.rows:
        table.add_row(str(r["image"]), f"{r['sigma_true']:.3f}", f"{r['sigma_mean']:.3f}",
                      f"[{r['sigma_low']:.3f}, {r['sigma_high']:.3f}]", "yes" if r["covered"] else "no",
                      f"{r['psnr_blind']:.2f}", f"{r['psnr_known']:.2f}", f"{r['psnr_solve']:.2f}")
    table.add_row("mean", f"{s['sigma_true']:.3f}", f"{s['sigma_mean']:.3f}", f"[{s['sigma_low']:.3f}, {s['sigma_high']:.3f}]",
                  f"{s['coverage']:.0%}", f"{s['psnr_blind']:.2f}", f"{s['psnr_known']:.2f}", f"{s['psnr_solve']:.2f}",
                  style="bold")
    console.print(table)
    console.print(f"prior exp(-V/T) at T = {s['prior_temperature']:.4g} ({s['prior_temperature_mode']}; the run's eps_max "
                  f"is {s['eps_max']:g}); known sigma: the same posterior with sigma given; solve: the known-noise "
                  "path of condition without --unknown-noise")
    if report.sigma_summary is not None:
        diag = Table(title=f"sigma per image (ArviZ summary over each image's {chains} chains x "
                           f"{s['draws_per_image'] // chains} draws; trust R-hat <= 1.01 and ESS >= 400)",
                     box=None, padding=(0, 1), pad_edge=False)
        cols = [c for c in report.sigma_summary.columns if c != "mcse_sd"]  # fits 80 columns; the JSON has all
        diag.add_column("", no_wrap=True)  # the parameter, as in ArviZ's table
        for col in cols:
            diag.add_column(col, justify="right", no_wrap=True)
        for name, row in report.sigma_summary[cols].iterrows():
            diag.add_row(str(name), *("-" if v != v else f"{v:.0f}" if col.startswith("ess") else f"{v:.3f}"
                                      for col, v in row.items()))
        console.print(diag)
    else:
        console.print(f"no R-hat or ESS of sigma: {s['diagnostics']}", markup=False, highlight=False)
    for line in ours:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    for path in report.files:
        console.print(f"wrote {path}")

# What `energyflow demo` writes into its run directory, and the file that marks a folder as its own.
DEMO_FILES = ("config.toml", "metrics.jsonl", "checkpoints/last.pt", "plots/loss.png", "plots/landscape.png",
              "plots/samples.png", "plots/trajectories.png")
DEMO_MARKER = ".energyflow-demo"


def _prepare_demo_dir(out: Path, force: bool) -> None:
    """Empties the demo's own files from ``out``, never anything else.

    A folder the demo made (it holds :data:`DEMO_MARKER`) is reused; any other non-empty
    folder is refused unless ``force``, and even then only :data:`DEMO_FILES` go.
    """
    from energyflow.outputs import check_output_dir

    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARKER).is_file() and not force:
            raise OutputPathError(
                f"--out {out} is not empty and was not made by `energyflow demo`; choose a new folder, or pass --force "
                f"to replace only the demo's own files in it ({', '.join(DEMO_FILES)})"
            )
        for name in DEMO_FILES:
            (out / name).unlink(missing_ok=True)
        for folder in (out / "checkpoints", out / "plots"):
            if folder.is_dir():
                for tmp in folder.glob(".last.pt.*.tmp"):
                    tmp.unlink()
                if not any(folder.iterdir()):
                    folder.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("made by `energyflow demo`, which may replace its own files here: "
                                   + ", ".join(DEMO_FILES) + "\n")


@app.command()
@friendly
def design(
    run: Path = typer.Argument(..., help="Run directory or checkpoint of a protein run (--preset aav-medium or aav-hard)."),
    n: int = typer.Option(512, "--n", help="Latents sampled per seed."),
    top: int = typer.Option(128, "--top", help="Designs kept per seed: the best by the guidance predictor after deduplication."),
    repulsion: str = typer.Option("none", "--repulsion",
                                  help="none, quadratic:STRENGTH (the paper's, with the [-1, 1] clamp) or rbf:STRENGTH "
                                       "(bounded); several strengths (rbf:0.5,1,2) sweep them and plot the trade-off."),
    bandwidth: Optional[float] = typer.Option(None, help="rbf: kernel width h (default: the median latent distance)."),
    zeta: Optional[float] = typer.Option(None, help="The fitness likelihood's scale (default: the paper's, 0.01 medium, 0.009 hard)."),
    t_end: Optional[float] = typer.Option(None, "--t-end", help="Sampler end time tau_s (default: 1.7 medium, 1.3 hard)."),
    clamp: Optional[float] = typer.Option(1.0, help="Clamp latents to [-clamp, clamp] after each step (the paper's 1.0)."),
    no_clamp: bool = typer.Option(False, "--no-clamp", help="Leave the latents unclamped."),
    seeds: int = typer.Option(5, "--seeds", help="Independent runs (generators seeded seed, seed+1, ...)."),
    seed: int = typer.Option(0, help="First seed."),
    predictor: str = typer.Option("plain", "--predictor",
                                  help="Guidance predictor: plain (trained on the task file), smoothed (GGS's graph "
                                       "smoothing of it, retrained; cached, about 5 minutes the first time) or blend "
                                       "(the mean of the two)."),
    select_by: Optional[str] = typer.Option(None, "--select-by",
                                            help="Predictor that picks the top designs: plain, smoothed or blend (default: "
                                                 "the guidance predictor)."),
    min_distance: int = typer.Option(0, "--min-distance",
                                     help="Keep the top designs at least this many edits apart where the candidates "
                                          "allow (greedy, best first; 0: GGS's plain top-k)."),
    min_diversity: Optional[float] = typer.Option(None, "--min-diversity",
                                                  help="Trade predicted fitness for distance until the top designs' "
                                                       "mean pairwise Levenshtein distance reaches this (the least "
                                                       "trade that does; e.g. GGS's 4.5 on hard). Default: no trade."),
    predictor_steps: Optional[int] = typer.Option(None, "--predictor-steps",
                                                  help="Training steps of the plain predictor, also the smoothed "
                                                       "one's starting point (cached; default 1000)."),
    oracle_steps: Optional[int] = typer.Option(None, "--oracle-steps",
                                               help="Training steps of the evaluation oracle (cached; default 2500)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for designs_seed*.csv, summary.json, the plot "
                                                                 "(default: RUN/design)."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda, ..."),
) -> None:
    """AAV inverse design: V + observe(high fitness | predictor(decode(z))) [+ repulsion], GGS's selection and table."""
    import json

    from energyflow.domains.protein.design import PUBLISHED, design_run, parse_repulsion, plot_tradeoff
    from energyflow.outputs import check_output_dir

    if seeds < 1:
        raise InvalidValueError(f"--seeds must be >= 1, got {seeds}")
    for flag, value in (("--predictor-steps", predictor_steps), ("--oracle-steps", oracle_steps)):
        if value is not None and value < 1:
            raise InvalidValueError(f"{flag} must be >= 1, got {value}")
    _check_t_end(t_end)
    kind, strengths = parse_repulsion(repulsion)
    out = out if out is not None else (run if run.is_dir() else run.parent) / "design"
    check_output_dir(out, "--out")
    # No repulsion alone, one setting alone, or a sweep that starts from no repulsion.
    settings = [(None, 0.0)] if kind is None or len(strengths) > 1 else []
    settings += [(kind, s) for s in strengths]
    rows = []
    seed_list = tuple(range(seed, seed + seeds))
    for k, s in settings:
        label = "none" if k is None else f"{k}:{s:g}"
        folder = out if len(settings) == 1 else out / label.replace(":", "_")
        with console.status(f"designing ({label}, {seeds} seed(s) of {n} latents)"):
            results, summary = design_run(run, folder, seeds=seed_list, device=device, n=n, top=top, zeta=zeta,
                                          t_end=t_end, clamp=None if no_clamp else clamp, repulsion=k,
                                          strength=s if k else 0.0, bandwidth=bandwidth, predictor=predictor,
                                          select_by=select_by, min_distance=min_distance,
                                          min_diversity=min_diversity,
                                          predictor_options={"steps": predictor_steps},
                                          oracle_options={"steps": oracle_steps})
        rows.append({"label": label, "summary": summary})
    task = results[0].config.task
    chosen = results[0].config
    guide = f"{chosen.predictor} predictor" + ("" if chosen.selector == chosen.predictor
                                               else f", selected by the {chosen.selector} one")
    if chosen.min_diversity is not None:
        guide += f" for diversity >= {chosen.min_diversity:g}"
    table = Table(title=f"AAV {task}: top {top} of {n} latents, {guide}, {seeds} seed(s), mean ± sd "
                        "(fitness: oracle, normalised; novelty: vs the task file)")
    for col in ("method", "median fitness", "diversity (mean)", "diversity (median)", "novelty (median)",
                "unique decoded"):
        table.add_column(col, justify="left" if col == "method" else "right")

    def cell(s: dict, key: str, digits: int) -> str:
        return f"{s[key]['mean']:.{digits}f} ± {s[key]['sd']:.{digits}f}"

    for row in rows:
        s = row["summary"]
        table.add_row(f"Energy Matching, repulsion {row['label']}", cell(s, "median_fitness", 3), cell(s, "diversity", 2),
                      cell(s, "median_diversity", 2), cell(s, "novelty", 2), cell(s, "unique_decoded", 0))
    for name, (fit, div, nov) in PUBLISHED[task].items():
        table.add_row(f"{name} (GGS paper)", f"{fit:.2f}", f"{div:.1f}", "-", f"{nov:.1f}", "-")
    console.print(table)
    if len(rows) > 1:
        console.print(f"plot: [bold]{plot_tradeoff(rows, task, out / 'tradeoff.png')}[/]")
        (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    console.print(f"designs and summary.json in [bold]{out}[/]")


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory (a new folder, or one the demo made)."),
    steps: int = typer.Option(4500, help="Training steps in all."),
    cd_steps: int = typer.Option(500, "--cd-steps", help="Of which the last ones add contrastive divergence (phase 2)."),
    seed: int = typer.Option(0, help="Random seed."),
    force: bool = typer.Option(
        False, "--force", help="Use a non-empty folder the demo did not make, replacing only the demo's own files in it.",
    ),
) -> None:
    """The paper's 2-D task (8 Gaussians -> two moons) on a CPU in a few minutes."""
    from energyflow.training import Trainer, resolve_config

    _quiet_unless_rank_zero()
    if not 0 <= cd_steps <= steps:
        raise InvalidValueError(f"--cd-steps must lie in [0, --steps={steps}], got {cd_steps}")
    cfg = resolve_config(
        "toy",
        overrides=dict(steps=steps, phase1_steps=max(0, steps - cd_steps), seed=seed, lr=1e-3, lr_warmup_steps=100,
                       num_langevin_steps=200, eval_every=steps, checkpoint_every=max(1, steps // 4),
                       eval_samples=2000, ema_decay=0.99),
    )
    _prepare_demo_dir(out, force)
    console.print(
        f"Energy Matching on 8 Gaussians -> two moons: {cfg.steps} steps "
        f"({cfg.warmup_steps} OT flow matching, then OT + contrastive divergence with {cfg.num_langevin_steps}-step Langevin negatives)"
    )
    trainer = Trainer(cfg, out)
    result = _run_training(trainer, cfg.steps)
    _print_metrics(result.eval_metrics, title="samples vs held-out data (lower is better)")
    import torch

    n = cfg.eval_samples
    floor = trainer.domain.metrics(trainer.domain.train_data(n, generator=torch.Generator().manual_seed(1)))
    console.print(f"for scale, {n} fresh data points against the same held-out data score "
                  + ", ".join(f"{k}={v:.4g}" for k, v in floor.items()))
    console.print(f"run directory: [bold]{result.run_dir}[/]  (config, metrics.jsonl, checkpoints)")
    for p in result.plots:
        console.print(f"plot: [bold]{p}[/]")
    console.print(f"next: energyflow sample {out} --n 2000 --out {out}/samples.pt")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
