"""Digits sample quality at equal training steps: Energy Matching vs CD-only EBM vs OT-CFM.

Data: ``ImageDomain("digits")``, the 1,438 real 8x8 training digits in ``[-1, 1]``;
quality is measured against the 359 held-out test digits with ``ImageDomain.metrics``
(Frechet distance in the cached digit classifier's features, ``fd``, lower is better;
``mode_coverage``, the fraction of the 10 classes given at least 2% of the samples).
The "data" row is 359 training digits against the 359 test digits: the floor a perfect
sampler reaches with this many images (FD is biased upward for small sets, so every row
uses the same number of samples, ``--samples``).

Methods, each trained for the same number of optimisation steps with the same batch (128)
and the same optimiser (Adam, betas (0.9, 0.95), gradient clip 1.0, linear LR warm-up,
one learning rate for all, ``--lr``, default 1e-3: the preset's 1e-4 gets nowhere in a
few CPU-minutes) and the same EMA (``--ema``, default 0.99 in both phases: the preset's
0.999 averages over ~1000 steps, longer than these runs, so the EMA weights would still
be close to the initial network):

- ``EM``: energyflow's ``Trainer`` with the paper's MNIST-like preset (tau* = 1,
  dt = 0.025, eps_max = 0.1, lambda_CD = 1e-3, clamp beta = 0.05) on the digits
  ``ConvPotential`` (hidden 64, depth 2, 181,249 parameters), ``--steps`` steps of which
  the last ``--phase2-steps`` add contrastive divergence (Algorithm 2) after the OT flow
  warm-up (Algorithm 1). Langevin chains for the negatives have ``--langevin-steps``
  steps (M; the paper's 75 costs ~4.5 s per step on one CPU thread, so the default is
  10, the same for CD-only). Sampled with the Euler-Heun Langevin sampler to
  ``t_end`` (tau_s).
- ``CD-only``: the same ``Trainer`` with ``flow_scale=0`` and ``phase1_steps=0``:
  contrastive divergence from the first step, same negatives, same sampler.
- ``OT-CFM``: a time-conditioned velocity network of about the same size
  (:class:`TimeConvVelocity`: the ConvPotential trunk on ``concat(x, t)`` with ``t`` a
  constant extra channel, a linear head back to an 8x8 image plus a 1x1-conv skip from the
  full-resolution features; 185k parameters) regressing ``x1 - x0`` at ``x_t`` on
  exactly the coupled batches ``(x0, x1, t)`` EM's trainer drew (recorded from its exact
  minibatch OT coupling), sampled with the midpoint ODE solver (``--ode-steps``, 100, so
  200 network evaluations per image).

The t_end sweep re-samples the EM model at each tau_s in ``--t-ends`` and reports FD,
gradient evaluations per image (from ``SampleResult.num_grad_evals``) and seconds per
image (median of ``--repeats`` interleaved timed runs on ``--time-batch`` images). The
best tau_s (lowest FD) is marked and used for the EM row of the main table.

The trained EM run directory is saved (``--run-dir``, default ``runs/bench/digits_em``,
ignored by git) for ``digits_inverse.py``.

Run:
    .venv/bin/python benchmarks/digits_quality.py --threads 1            # full (~12 min on 1 thread)
    .venv/bin/python benchmarks/digits_quality.py --threads 1 --quick    # smoke run (~1 min)
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import (base_parser, env_info, markdown_table, sample_midpoint, set_threads, summary,
                         time_interleaved, train_ot_cfm, write_result)
else:  # imported as benchmarks.digits_quality
    from ._common import (base_parser, env_info, markdown_table, sample_midpoint, set_threads, summary,
                          time_interleaved, train_ot_cfm, write_result)

import torch
from torch import Tensor, nn

from energyflow.domains.image import ImageDomain
from energyflow.domains.image.networks import count_parameters
from energyflow.field import compile as compile_field
from energyflow.training import Trainer, resolve_config
from energyflow.training.run import sampler_for

NAME = "digits_quality"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = REPO / "runs" / "bench" / "digits_em"
TARGET_EM_OVER_CFM = 1.5
DEFAULT_T_ENDS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


# --- OT-CFM -----------------------------------------------------------------------------------
class TimeConvVelocity(nn.Module):
    """Velocity field ``v(x, t)`` on images: the ConvPotential trunk with ``t`` as an extra channel.

    Layout: ``concat(x, t * 1)`` -> conv (C+1 -> h), conv h -> h (full resolution, SiLU),
    ``depth`` stride-2 convs (h, then 2h), flatten -> Linear -> SiLU -> Linear to
    ``C * H * W``, reshaped to an image, plus a 1x1 convolution of the full-resolution
    features (a skip, so that the output can follow local structure).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.shape = (in_channels, image_size, image_size)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels + 1, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
        )
        layers: list[nn.Module] = []
        ch = hidden
        for i in range(1, depth + 1):
            out = hidden * min(2 ** (i - 1), 2)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.SiLU()]
            ch = out
        self.down = nn.Sequential(*layers)
        side = image_size // 2**depth
        n_out = in_channels * image_size * image_size
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(ch * side * side, hidden), nn.SiLU(), nn.Linear(hidden, n_out))
        self.skip = nn.Conv2d(hidden, in_channels, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        tt = t.reshape(-1, 1, 1, 1).to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        h = self.stem(torch.cat([x, tt], dim=1))
        return self.head(self.down(h)).reshape(x.shape[0], *self.shape) + self.skip(h)


class CouplingRecorder:
    """Wraps a trainer's coupling; records every coupled batch and the ``t`` the trainer draws next.

    ``Trainer.train_step`` draws ``t = torch.rand(B, generator=data_gen)`` right after
    pairing; the recorder reads the same numbers from a copy of the generator state, so
    the trainer's own random stream is not touched.
    """

    def __init__(self, inner, trainer: Trainer) -> None:
        self.inner, self.trainer = inner, trainer
        self.batches: list[tuple[Tensor, Tensor, Tensor]] = []

    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None):
        a, b = self.inner.pair(x0, x1, generator=generator)
        copy = torch.Generator()
        copy.set_state(self.trainer.data_gen.get_state())
        self.batches.append((a.detach().clone(), b.detach().clone(), torch.rand(a.shape[0], generator=copy)))
        return a, b


# --- energyflow trainers -------------------------------------------------------------------
def digits_config(args, **extra):
    """The paper's MNIST-like preset on the digits ConvPotential, with the benchmark's budget."""
    overrides = dict(
        domain="image", dataset="digits", hidden=64, depth=2, steps=args.steps,
        phase1_steps=args.steps - args.phase2_steps, lr=args.lr, lr_warmup_steps=args.lr_warmup,
        num_langevin_steps=args.langevin_steps, ema_decay=args.ema, ema_decay_phase2=args.ema,
        device="cpu", seed=args.seed, eval_every=10**9, checkpoint_every=10**9,
        eval_samples=args.samples,
    )
    overrides.update(extra)
    return resolve_config("mnist", overrides=overrides)


def train_trainer(trainer: Trainer, steps: int) -> tuple[float, dict, list[float]]:
    """Runs ``steps`` train steps; returns wall seconds, the last record and per-phase step times."""
    t0 = time.perf_counter()
    last: dict = {}
    per_step: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(steps):
        last = trainer.train_step()
        per_step[last["phase"]].append(last["seconds"])
    return time.perf_counter() - t0, last, per_step


def em_sampler_fn(trainer: Trainer, x0: Tensor, t_end: float, seed: int):
    """A closure drawing EM/CD samples from ``x0`` to ``t_end`` (the trainer's EMA potential)."""
    field = compile_field(trainer.sampling_potential(), trainer.domain.space)
    sampler = sampler_for(trainer.cfg, t_end=t_end)

    def draw():
        return sampler.run(field, x0, generator=torch.Generator().manual_seed(seed))

    return draw


def quality(domain: ImageDomain, samples: Tensor, reference: Tensor) -> dict[str, float]:
    samples = samples.detach().cpu()
    if not torch.isfinite(samples).all():
        return {"fd": math.nan, "mode_coverage": math.nan, "class_entropy": math.nan}
    return {k: float(v) for k, v in domain.metrics(samples, reference).items()}


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps for every method (full 500, quick 30)")
    parser.add_argument("--phase2-steps", type=int, default=None, help="EM steps with CD after the OT warm-up (full 100, quick 5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate for all methods (1e-3)")
    parser.add_argument("--lr-warmup", type=int, default=None, help="linear LR warm-up steps (full 50, quick 5)")
    parser.add_argument("--ema", type=float, default=0.99, help="EMA decay for all methods, both phases (0.99)")
    parser.add_argument("--langevin-steps", type=int, default=None, help="Langevin steps M of the CD negatives (full 10, quick 5)")
    parser.add_argument("--samples", type=int, default=None, help="generated images per FD (full 359 = the test set, quick 128)")
    parser.add_argument("--time-batch", type=int, default=None, help="images per timed sampling run (full 128, quick 32)")
    parser.add_argument("--ode-steps", type=int, default=100, help="midpoint steps of the OT-CFM ODE solve (100)")
    parser.add_argument("--t-ends", type=float, nargs="+", default=None, help=f"tau_s sweep for EM (default {list(DEFAULT_T_ENDS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None,
                        help=f"where the trained EM run is kept (default {DEFAULT_RUN_DIR.relative_to(REPO)}; quick: a temp dir)")
    args = parser.parse_args(argv)
    q = args.quick
    args.steps = args.steps or (30 if q else 500)
    args.phase2_steps = args.phase2_steps if args.phase2_steps is not None else (5 if q else 100)
    args.lr_warmup = args.lr_warmup if args.lr_warmup is not None else (5 if q else 50)
    args.langevin_steps = args.langevin_steps or (5 if q else 10)
    args.samples = args.samples or (128 if q else 359)
    args.time_batch = args.time_batch or (32 if q else 128)
    args.repeats = args.repeats or (1 if q else 3)
    args.warmup = args.warmup if args.warmup is not None else (0 if q else 1)
    args.t_ends = args.t_ends or ([1.0, 2.0] if q else list(DEFAULT_T_ENDS))
    if not 0 <= args.phase2_steps <= args.steps:
        parser.error("--phase2-steps must lie in [0, --steps]")
    set_threads(args.threads)

    t_start = time.perf_counter()
    domain = ImageDomain("digits")
    test = domain.test_data()
    n = min(args.samples, test.shape[0])
    reference = test[:n]
    train_subset = domain.train_data()[torch.randperm(domain.train_data().shape[0], generator=torch.Generator().manual_seed(7))[:n]]
    x0_eval = domain.sample_source(n, generator=torch.Generator().manual_seed(30_000 + args.seed))
    x0_time = x0_eval[: args.time_batch]
    results: dict = {"data": {**quality(domain, train_subset, reference), "train_s": 0.0}}

    tmp = tempfile.TemporaryDirectory()
    if args.run_dir is None:
        args.run_dir = Path(tmp.name) / "digits_em" if q else DEFAULT_RUN_DIR
    run_dir = Path(args.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)

    # (a) Energy Matching, recording the coupled batches for OT-CFM
    cfg = digits_config(args)
    em = Trainer(cfg, run_dir)
    rec = CouplingRecorder(em.coupling, em)
    em.coupling = rec
    print(f"training EM ({cfg.steps} steps, {cfg.warmup_steps} OT warm-up + {cfg.steps - cfg.warmup_steps} OT+CD) ...", flush=True)
    em_train_s, em_last, em_steps = train_trainer(em, cfg.steps)
    em.fit()  # steps already done: writes config.toml, the checkpoint and the loss plot only
    em.coupling = rec.inner

    # EM t_end sweep: FD on n images per tau_s, timing on time_batch images (interleaved repeats)
    sweep: dict[str, dict] = {}
    for te in args.t_ends:
        res = em_sampler_fn(em, x0_eval, te, 40_000 + args.seed)()
        sweep[f"{te:g}"] = {"t_end": te, **quality(domain, res.samples, reference),
                            "grad_evals_per_image": res.num_grad_evals}
        print(f"  EM t_end={te:g}: fd {sweep[f'{te:g}']['fd']:.2f}", flush=True)
    timers = {f"{te:g}": em_sampler_fn(em, x0_time, te, 41_000 + args.seed) for te in args.t_ends}

    # (b) CD-only EBM
    cd_cfg = digits_config(args, flow_scale=0.0, phase1_steps=0)
    with tempfile.TemporaryDirectory() as cd_dir:
        cd = Trainer(cd_cfg, cd_dir)
        print(f"training CD-only ({cd_cfg.steps} steps) ...", flush=True)
        cd_train_s, cd_last, cd_steps = train_trainer(cd, cd_cfg.steps)
    cd_res = {f"{te:g}": quality(domain, em_sampler_fn(cd, x0_eval, te, 40_000 + args.seed)().samples, reference)
              for te in args.t_ends}

    # (c) OT-CFM on the same coupled batches
    print(f"training OT-CFM ({len(rec.batches)} steps) ...", flush=True)
    torch.manual_seed(args.seed)
    cfm, cfm_train_s, cfm_loss = train_ot_cfm(
        TimeConvVelocity(1, 8, hidden=cfg.hidden, depth=cfg.depth), rec.batches, cfg, ema_decay=args.ema
    )
    x_cfm = sample_midpoint(cfm, x0_eval, args.ode_steps)
    timers["OT-CFM"] = lambda: sample_midpoint(cfm, x0_time, args.ode_steps)
    best_cd_key = min(cd_res, key=lambda k: cd_res[k]["fd"] if math.isfinite(cd_res[k]["fd"]) else math.inf)
    timers["CD-only"] = em_sampler_fn(cd, x0_time, float(best_cd_key), 41_000 + args.seed)

    print(f"timing sampling ({args.repeats} interleaved repeats of {x0_time.shape[0]} images) ...", flush=True)
    times = time_interleaved(timers, repeats=args.repeats, warmup=args.warmup)
    for key, entry in sweep.items():
        entry["seconds_per_image"] = summary(times[key])["median"] / x0_time.shape[0]
        entry["timing"] = summary(times[key])
    best_key = min(sweep, key=lambda k: sweep[k]["fd"] if math.isfinite(sweep[k]["fd"]) else math.inf)

    results["EM"] = {**{k: sweep[best_key][k] for k in ("fd", "mode_coverage", "class_entropy")},
                     "t_end": sweep[best_key]["t_end"], "train_s": em_train_s,
                     "train_step_s_median": {f"phase{p}": summary(v)["median"] for p, v in em_steps.items() if v},
                     "grad_evals_per_image": sweep[best_key]["grad_evals_per_image"],
                     "seconds_per_image": sweep[best_key]["seconds_per_image"], "last_record": em_last,
                     "parameters": count_parameters(em.net)}
    results["CD-only"] = {**cd_res[best_cd_key], "t_end": float(best_cd_key), "train_s": cd_train_s,
                          "train_step_s_median": {f"phase{p}": summary(v)["median"] for p, v in cd_steps.items() if v},
                          "grad_evals_per_image": sweep[best_cd_key]["grad_evals_per_image"],
                          "seconds_per_image": summary(times["CD-only"])["median"] / x0_time.shape[0],
                          "fd_by_t_end": cd_res, "last_record": cd_last, "parameters": count_parameters(cd.net)}
    results["OT-CFM"] = {**quality(domain, x_cfm, reference), "train_s": cfm_train_s, "final_loss": cfm_loss,
                         "network_evals_per_image": 2 * args.ode_steps,
                         "seconds_per_image": summary(times["OT-CFM"])["median"] / x0_time.shape[0],
                         "parameters": count_parameters(cfm)}
    total_s = time.perf_counter() - t_start

    print(f"\n## Digits sample quality at equal training steps ({args.steps} steps, batch {cfg.batch_size}, "
          f"lr {args.lr:g} with {args.lr_warmup} warm-up steps, EMA {args.ema:g}, EM: {cfg.warmup_steps} OT + "
          f"{cfg.steps - cfg.warmup_steps} OT+CD steps, M={args.langevin_steps}, {n} samples vs {n} held-out digits, "
          f"seed {args.seed}, {torch.get_num_threads()} thread(s), torch {torch.__version__})\n")
    print("FD = Frechet distance of the digit classifier's features (lower is better); coverage = share of the 10 "
          "classes with >= 2% of the samples; 'data' = training digits vs the held-out ones (the floor)\n")
    rows = []
    for m in ("EM", "CD-only", "OT-CFM", "data"):
        r = results[m]
        if m == "OT-CFM":
            how = f"midpoint ODE, {args.ode_steps} steps ({2 * args.ode_steps} net evals)"
        elif m == "data":
            how = "-"
        else:
            how = f"Heun Langevin to t={r['t_end']:g} ({r['grad_evals_per_image']} grad evals)"
        rows.append([m, r["fd"], r["mode_coverage"], r["class_entropy"], r["train_s"],
                     r.get("seconds_per_image", math.nan) * 1e3, r.get("parameters", "-"), how])
    print(markdown_table(["method", "FD", "coverage", "class entropy", "train s", "sample ms/image", "params", "sampler"], rows))

    print(f"\n### EM sampling cost vs tau_s (t_end); dt = {cfg.step_size:g}, Heun (2 gradients a step); "
          f"ms/image = median of {args.repeats} runs of {x0_time.shape[0]} images\n")
    rows = []
    for key, e in sweep.items():
        rows.append([key + (" (best)" if key == best_key else ""), e["fd"], e["mode_coverage"],
                     e["grad_evals_per_image"], e["seconds_per_image"] * 1e3,
                     cd_res[key]["fd"] if key in cd_res else math.nan])
    print(markdown_table(["t_end", "EM FD", "EM coverage", "grad evals/image", "ms/image", "CD-only FD"], rows))

    em_fd, cd_fd, cfm_fd = results["EM"]["fd"], results["CD-only"]["fd"], results["OT-CFM"]["fd"]
    verdict = {"em_over_cd_fd": em_fd / cd_fd, "em_over_cfm_fd": em_fd / cfm_fd,
               "em_beats_cd": em_fd < cd_fd, f"em_within_{TARGET_EM_OVER_CFM}x_of_cfm": em_fd <= TARGET_EM_OVER_CFM * cfm_fd}
    print("\n### Targets\n")
    print(markdown_table(
        ["EM/CD-only FD", "EM beats CD-only", "EM/OT-CFM FD", f"<= {TARGET_EM_OVER_CFM}"],
        [[verdict["em_over_cd_fd"], "yes" if verdict["em_beats_cd"] else "NO", verdict["em_over_cfm_fd"],
          "yes" if verdict[f"em_within_{TARGET_EM_OVER_CFM}x_of_cfm"] else "NO"]],
    ))
    print(f"\nEM run kept in {run_dir} (for digits_inverse.py); total wall time {total_s:.0f} s")

    payload = {
        "name": NAME, "quick": q, "steps": args.steps, "phase2_steps": args.phase2_steps, "lr": args.lr,
        "lr_warmup": args.lr_warmup, "ema": args.ema, "langevin_steps": args.langevin_steps, "samples": n,
        "time_batch": x0_time.shape[0], "repeats": args.repeats, "ode_steps": args.ode_steps, "seed": args.seed,
        "results": results, "t_end_sweep": sweep, "best_t_end": sweep[best_key]["t_end"], "targets": verdict,
        "config": cfg.to_dict(), "run_dir": str(run_dir), "total_seconds": total_s,
        "env": env_info(torch.get_num_threads()),
    }
    if not args.no_json:
        path = write_result(NAME + ("_quick" if q else ""), payload)
        print(f"wrote {path}")
    tmp.cleanup()
    return payload


if __name__ == "__main__":
    main()
