"""The Energy Matching trainer: OT warm-up, then OT + contrastive divergence.

A run directory holds everything about a run (config.toml, metrics.jsonl,
checkpoints/last.pt, plots/); :mod:`energyflow.training.run` reads it back
(``load_potential``, ``read_metrics``, ``plot_run``, ``sampler_for``) and
:mod:`energyflow.training.build` builds what a config names (device, domain, network).

The trainer never prints: pass ``callback`` to :meth:`Trainer.fit` to receive every
step's record (the CLI turns them into a progress bar). Under ``torchrun`` it wraps the
network in DistributedDataParallel (gloo on CPU, NCCL on GPU); rank 0 writes the run
directory.

Example:
    >>> import tempfile
    >>> from energyflow.training import Trainer, resolve_config
    >>> cfg = resolve_config("toy", overrides=dict(steps=4, phase1_steps=2, num_langevin_steps=5,
    ...                      batch_size=16, eval_every=4, eval_samples=64, hidden=16))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     result = Trainer(cfg, d).fit()
    >>> result.step, sorted(result.eval_metrics)
    (4, ['mmd', 'w2'])
"""

from __future__ import annotations

import functools

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from energyflow import tree
from energyflow.energies.potential import Potential
from energyflow.errors import EnergyflowError, InvalidValueError, OutputPathError
from energyflow.field import compile as compile_field
from energyflow.registry import COUPLINGS
from energyflow.samplers.base import SampleResult
from energyflow.training.build import build_domain, build_network, resolve_device
from energyflow.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from energyflow.training.config import TrainConfig, save_config
from energyflow.training.losses import energy_matching_loss, linear_path
from energyflow.training.run import plot_run, sampler_for
from energyflow.tree import State


class TrainingDiverged(EnergyflowError, FloatingPointError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


class EvaluationError(EnergyflowError):
    """An evaluation during or after training failed; the checkpoint of the trained model is kept."""


@attrs.frozen
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        run_dir (Path): the run directory.
        step (int): steps completed.
        eval_metrics (dict[str, float]): the last evaluation's metrics.
        checkpoint (Path | None): the last checkpoint written.
        plots (list[Path]): plot files written.
    """

    run_dir: Path
    step: int
    eval_metrics: dict
    checkpoint: Path | None
    plots: list = attrs.field(factory=list)


def lr_factor(step: int, *, warmup: int, steps: int, schedule: str) -> float:
    """The learning rate's multiplier at ``step``: a linear warm-up, then constant or cosine.

    Example:
        >>> [round(lr_factor(s, warmup=2, steps=10, schedule="cosine"), 3) for s in (0, 1, 5, 9)]
        [0.5, 0.976, 0.5, 0.024]
    """
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return warm * _DECAY[schedule](step, steps)


_DECAY = {
    "constant": lambda step, steps: 1.0,
    "cosine": lambda step, steps: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps)),
}


class Trainer:
    """Trains a potential by Energy Matching into ``run_dir``.

    Args:
        config (TrainConfig): the run's config.
        run_dir (str | Path): where config, metrics, checkpoints and plots go.
        resume (bool): continue from ``run_dir/checkpoints/last.pt`` (same step,
            optimiser, EMA and RNG states).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, resume: bool = False) -> None:
        self.cfg = cfg = config
        self.run_dir = Path(run_dir)
        self.distributed = torch.distributed.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = resolve_device(cfg.device)
        checkpoint = self.run_dir / "checkpoints" / "last.pt"
        if not resume and checkpoint.exists():
            raise OutputPathError(f"{self.run_dir} already holds a run ({checkpoint}); continue it with "
                                  f"--resume {self.run_dir} or choose another run directory")
        self.set_aside: list[Path] = []  # logs of an earlier, unfinished run moved out of the way
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group(backend=backend)
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world_size = torch.distributed.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0

        self.domain = build_domain(cfg)
        self.coupling = COUPLINGS.build(cfg.coupling)
        net = build_network(self.domain, cfg).to(self.device)
        self.net = net
        self.potential = Potential(net, scale=cfg.output_scale)  # used for sampling
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.train_potential = Potential(ddp, scale=cfg.output_scale)
        else:
            self.train_potential = self.potential
        self.field = compile_field(self.potential, self.domain.space)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, functools.partial(
            lr_factor, warmup=cfg.lr_warmup_steps, steps=cfg.steps, schedule=cfg.lr_schedule))
        self._ema_decay = cfg.ema_decay
        self.ema: AveragedModel | None = None
        if cfg.ema_decay is not None:
            self.ema = AveragedModel(self.potential, avg_fn=self._ema_average, use_buffers=True)
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.rank)
        self.noise_gen = torch.Generator(self.device).manual_seed(cfg.seed * 1_000_033 + 7 + self.rank)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self._saved_at: int | None = None
        self.eval_metrics: dict[str, float] = {}
        if self.is_main:
            self._remove_orphaned_temporaries()
        if resume:
            self._resume()
        elif self.is_main:
            self._set_aside_stale_log()

    # --- run directory ------------------------------------------------------------------
    def _remove_orphaned_temporaries(self) -> None:
        """Deletes ``checkpoints/.last.pt.*.tmp`` left by a process killed while writing."""
        folder = self.run_dir / "checkpoints"
        if folder.is_dir():
            for tmp in folder.glob(".last.pt.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _set_aside_stale_log(self) -> None:
        """A new run starts a clean ``metrics.jsonl``; one left by a run killed before its
        first checkpoint is renamed ``metrics.<time>.jsonl.old`` (never appended to)."""
        log = self.run_dir / "metrics.jsonl"
        if log.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target = log.with_name(f"metrics.{stamp}.jsonl.old")
            n = 1
            while target.exists():
                target, n = log.with_name(f"metrics.{stamp}-{n}.jsonl.old"), n + 1
            log.replace(target)
            self.set_aside.append(target)

    # --- EMA ------------------------------------------------------------------------------
    def _ema_average(self, averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        decay = self._ema_decay if self._ema_decay is not None else 0.0
        return decay * averaged + (1.0 - decay) * current

    def sampling_potential(self) -> Potential:
        """The EMA potential if EMA is on, else the live one."""
        return self.ema.module if self.ema is not None else self.potential

    # --- state ----------------------------------------------------------------------------
    def _rng_states(self) -> list[Tensor]:
        local = [self.data_gen.get_state(), self.noise_gen.get_state().cpu()]
        if not self.distributed:
            return [local]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, local)
        return gathered

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self._rng_states(),
            "world_size": self.world_size,
        }

    def save(self) -> Path:
        """Writes ``checkpoints/last.pt`` (rank 0) and returns its path."""
        state = self.state_dict()  # every rank joins the RNG gather
        path = self.run_dir / "checkpoints" / "last.pt"
        if self.is_main:
            save_checkpoint(state, path)
        self.last_checkpoint = path
        self._saved_at = self.step
        return path

    def _resume(self) -> None:
        state = load_checkpoint(self.run_dir / "checkpoints" / "last.pt", map_location=self.device)
        try:
            self.net.load_state_dict(state["model"])
            if self.ema is not None:
                if state.get("ema") is None:
                    raise CheckpointError("the checkpoint has no EMA weights but the config enables EMA")
                self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"checkpoint does not match this config's network: {err}") from err
        rngs = state["rng"]
        if int(state.get("world_size", 1)) == self.world_size and len(rngs) > self.rank:
            self.data_gen.set_state(rngs[self.rank][0])
            self.noise_gen.set_state(rngs[self.rank][1].to(self.noise_gen.get_state().device))
        else:  # a different world size cannot replay the same streams; reseed deterministically
            self.data_gen.manual_seed(self.cfg.seed * 1_000_003 + self.rank + 7919 * int(state["step"]))
            self.noise_gen.manual_seed(self.cfg.seed * 1_000_033 + self.rank + 7919 * int(state["step"]))
        self.step = int(state["step"])
        if self.step > self.cfg.steps:
            raise InvalidValueError(f"{self.run_dir} is at step {self.step}; steps={self.cfg.steps} is below it "
                                    f"(ask for {self.step} steps or more to continue)")
        if self.ema is not None and self.step >= self.cfg.warmup_steps and self.cfg.ema_decay_phase2 is not None:
            self._ema_decay = self.cfg.ema_decay_phase2
        self.last_checkpoint = self.run_dir / "checkpoints" / "last.pt"
        self._truncate_metrics(self.step)

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if not self.is_main or not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        path.write_text("".join(k + "\n" for k in keep))

    # --- one step -------------------------------------------------------------------------
    def negatives(self, x_data: State) -> State:
        """Langevin negatives: half started from data (at t = 1), half from the source (t = 0)."""
        cfg, n = self.cfg, tree.batch_size(x_data)
        n_data = n // 2
        parts = []
        pot = self.potential
        was_training = pot.training
        pot.eval()
        try:
            if n_data > 0:
                run = sampler_for(cfg, t_start=1.0, t_end=1.0 + cfg.num_langevin_steps * cfg.step_size, method="euler")
                parts.append(run.run(self.field, tree.index(x_data, slice(0, n_data)), generator=self.noise_gen, trace=False,
                                     check_every=cfg.num_langevin_steps).samples)
            if n - n_data > 0:  # source states shaped like the data they stand beside (graphs: node masks)
                x0 = self.domain.sample_source(generator=self.data_gen, like=tree.index(x_data, slice(n_data, n)))
                run = sampler_for(cfg, t_start=0.0, t_end=cfg.num_langevin_steps * cfg.step_size, method="euler")
                parts.append(run.run(self.field, x0, generator=self.noise_gen, trace=False,
                                     check_every=cfg.num_langevin_steps).samples)
        finally:
            pot.train(was_training)
        return tree.detach(tree.cat(parts))

    def _last_good(self) -> str:
        if self.last_checkpoint is not None:
            return f"the last good checkpoint is {self.last_checkpoint} (resume with --resume)"
        return "no checkpoint had been written yet"

    def train_step(self) -> dict[str, Any]:
        """One optimisation step; returns its log record."""
        cfg = self.cfg
        t0 = time.perf_counter()
        phase = 1 if self.step < cfg.warmup_steps else 2
        if phase == 2 and self.ema is not None and cfg.ema_decay_phase2 is not None:
            self._ema_decay = cfg.ema_decay_phase2
        b = cfg.batch_size
        x1 = tree.to(self.domain.sample_data(b, generator=self.data_gen), self.device)
        x0 = self.domain.sample_source(generator=self.data_gen, like=x1)  # paired with x1 by the coupling
        t_ot = time.perf_counter()
        x0, x1 = self.coupling.pair(x0, x1, generator=self.data_gen)
        t_ot = time.perf_counter() - t_ot
        t = torch.rand(b, generator=self.data_gen).to(self.device)
        path = linear_path(x0, x1, t)
        x_data = x_neg = None
        use_cd = phase == 2 and cfg.lambda_cd > 0
        if use_cd:
            x_data = tree.to(self.domain.sample_data(b, generator=self.data_gen), self.device)
            x_neg = self.negatives(x_data)
        out = energy_matching_loss(
            self.train_potential, path, x_data, x_neg,
            # Algorithm 1 (phase 1) fits -grad V everywhere on the path, unweighted; the
            # ramp w(t) over [tau*, 1] belongs to phase 2, where CD shapes V near the data.
            tau_star=cfg.tau_star if phase == 2 else 1.0, lambda_cd=cfg.lambda_cd if use_cd else 0.0,
            alpha=cfg.trim_alpha, beta=cfg.clamp_beta, flow_scale=cfg.flow_scale, space=self.domain.space,
        )
        finite = torch.isfinite(out.loss.detach()).to(torch.float32)
        if self.distributed:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1.0:
            where = self._last_good()
            raise TrainingDiverged(
                f"the loss became {float(out.loss.detach()):g} at step {self.step} (phase {phase}); {where}. "
                f"Try a smaller lr (now {cfg.lr:g}), a smaller step_size or a stronger grad_clip."
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_norm))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"the gradient became {grad_norm:g} at step {self.step} (phase {phase}) while the loss was finite; "
                f"the weights were not updated and {self._last_good()}. Try a smaller lr (now {cfg.lr:g})."
            )
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.potential)
        self.step += 1
        return {
            "kind": "train", "step": self.step, "phase": phase, "loss": float(out.loss.detach()),
            "flow": out.flow, "cd": out.cd, "energy_data": out.energy_data,
            "energy_negative": out.energy_negative, "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": grad_norm, "seconds": time.perf_counter() - t0, "ot_seconds": t_ot,
        }

    # --- evaluation -----------------------------------------------------------------------
    def sample(self, n: int, *, generator: torch.Generator | None = None, t_end: float | None = None,
               record_every: int | None = None) -> SampleResult:
        """Draws ``n`` samples from the (EMA) model with the config's sampler."""
        gen = generator or torch.Generator(self.device).manual_seed(self.cfg.seed + 12345 + self.step)
        src_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device)))
        x0 = tree.to(self.domain.sample_source(n, generator=src_gen), self.device)
        pot = self.sampling_potential()
        field = compile_field(pot, self.domain.space)
        return sampler_for(self.cfg, t_end=t_end).run(field, x0, generator=gen, record_every=record_every)

    def evaluate(self) -> dict[str, float]:
        """The domain's metrics on ``eval_samples`` fresh samples against its held-out data.

        The reference is the domain's own (:meth:`~energyflow.domains.Domain.test_data`:
        the test split, or a fixed-seed draw no training stream uses), never training data.
        """
        result = self.sample(self.cfg.eval_samples)
        metrics = self.domain.metrics(tree.to(tree.detach(result.samples), "cpu"))
        self.eval_metrics = {k: float(v) for k, v in metrics.items()}
        return self.eval_metrics

    def _evaluate_keeping_checkpoint(self) -> dict[str, float]:
        try:
            return self.evaluate()
        except EnergyflowError as err:
            kept = (f"; {self.last_checkpoint} holds the model of step {self._saved_at}"
                    if self.last_checkpoint is not None else "")
            raise EvaluationError(f"the evaluation at step {self.step} failed: {err}{kept}") from err

    # --- loop -----------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(clean) + "\n")

    def fit(self, callback: Callable[[dict[str, Any]], None] | None = None, *, max_steps: int | None = None) -> TrainResult:
        """Trains until ``config.steps`` (or ``max_steps`` more steps, to split a run).

        Args:
            callback: receives every step's record (and eval records).
            max_steps: stop after this many steps of this call (used to simulate an
                interrupted run); checkpoints are written at the end either way.

        Raises:
            TrainingDiverged: the loss became non-finite.
        """
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.toml")
        target = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        while self.step < target:
            record = self.train_step()
            if self.step % cfg.log_every == 0 or self.step == target:
                self._log(record)
            if callback is not None:
                callback(record)
            if self.step % cfg.checkpoint_every == 0 or self.step == target:
                self.save()  # the trained model is on disk before the (fallible) final evaluation
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                if self.is_main:
                    metrics = self._evaluate_keeping_checkpoint()
                    eval_record = {"kind": "eval", "step": self.step, **metrics}
                    self._log(eval_record)
                    if callback is not None:
                        callback(eval_record)
        if self._saved_at != self.step:
            self.save()
        plots = self.plot() if self.is_main and self.step >= cfg.steps else []
        if self.distributed:
            torch.distributed.barrier()
        return TrainResult(self.run_dir, self.step, dict(self.eval_metrics), self.last_checkpoint, plots)

    def plot(self) -> list[Path]:
        """Writes plots for the run (loss curves; landscape and samples for 2-D domains)."""
        return plot_run(self.run_dir, self.sampling_potential(), self.domain, self.cfg, self.sample)
