"""Inverse problems on held-out digits with a trained Energy Matching potential.

For each task (``energyflow.inverse.make_task``: ``inpaint_box`` centre 4x4 missing,
``inpaint_half`` bottom half missing, ``inpaint_random`` half the pixels missing,
``denoise`` noise std 0.3, ``deblur`` 3x3 Gaussian blur), measurements are taken of the
first ``--num-images`` held-out test digits (never seen in training) and reconstructed by:

- ``posterior``: ``--chains`` draws per measurement from ``V + observe(y | x)`` with the
  run's Langevin (Heun, dt and eps(t) of the run, to ``--t-end``), the observation
  guiding the transport through its predicted endpoint (``inverse.solve``'s default);
- ``posterior+repulsion``: the same plus the quadratic repulsion among the chains of one
  measurement on the reconstructed pixels (bandwidth ``inverse.default_repulsion_sigma``);
- ``posterior mean``: the mean of the (no-repulsion) draws (an MMSE estimate);
- ``paper sampler`` (and its mean): ``solve(..., guidance=False)``, the paper's
  conditional Langevin, where the observation is tempered by eps(t) and so inert during
  the transport (t < tau* = 1); the default ``posterior`` lets it guide the transport
  through the predicted endpoint (``energyflow.samplers.guided.GuidedLangevin``);
- ``nearest neighbour``: the training digit whose measurement is closest to ``y``
  (``inverse.nearest_neighbour_baseline``);
- ``unconditional``: one unconditional sample of the same model per measurement (the
  same sampler without the observation).

Scores (``inverse.evaluate`` and ``energyflow.metrics``): PSNR in dB on the task region
(the missing pixels for inpainting, the whole image for denoising and deblurring; mean
over draws), SSIM on the whole image (mean over draws), and diversity (mean pairwise
L2 distance among the draws of one measurement). Grids (truth, measurement, draws
without and with repulsion, posterior mean, nearest neighbour, unconditional) are
written as PNGs to ``benchmarks/results/digits_inverse/``.

The model is the run ``digits_quality.py`` keeps (``runs/bench/digits_em``); with
``--train-if-missing`` a run is trained here first with the same settings
(``digits_quality.digits_config``, phase 1 + phase 2 Energy Matching).

Run:
    .venv/bin/python benchmarks/digits_inverse.py --threads 1                      # full
    .venv/bin/python benchmarks/digits_inverse.py --threads 1 --quick --train-if-missing
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import RESULTS_DIR, base_parser, env_info, markdown_table, set_threads, write_result
    from digits_quality import DEFAULT_RUN_DIR, digits_config
else:  # imported as benchmarks.digits_inverse
    from ._common import RESULTS_DIR, base_parser, env_info, markdown_table, set_threads, write_result
    from .digits_quality import DEFAULT_RUN_DIR, digits_config

import torch
from torch import Tensor

from energyflow import plotting
from energyflow.field import compile as compile_field
from energyflow.inverse import (
    TASK_DEFAULT_NOISE,
    baseline_psnr,
    default_repulsion_sigma,
    evaluate,
    make_task,
    nearest_neighbour_baseline,
    solve,
)
from energyflow.metrics import psnr, ssim
from energyflow.training import Trainer
from energyflow.training.run import load_potential, sampler_for

NAME = "digits_inverse"
TASKS = ("inpaint_box", "inpaint_half", "inpaint_random", "denoise", "deblur")
MAX_PSNR_DROP_DB = 2.0


def ensure_run(run_dir: Path, args) -> None:
    """Trains the EM digits run into ``run_dir`` with digits_quality's settings if it is missing."""
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return
    if not args.train_if_missing:
        raise SystemExit(f"no trained run in {run_dir}: run benchmarks/digits_quality.py first, or pass --train-if-missing")
    cfg = digits_config(args)
    print(f"training EM into {run_dir} ({cfg.steps} steps, {cfg.warmup_steps} OT warm-up) ...", flush=True)
    Trainer(cfg, run_dir).fit()


def run_task(name: str, potential, cfg, domain, args, out_dir: Path) -> dict:
    task = make_task(name, tuple(domain.space.event_shape), args.noise.get(name))
    truth = domain.test_data()[: args.num_images].float()
    y = task.measure(truth, generator=torch.Generator().manual_seed(args.seed))
    sampler = sampler_for(cfg, t_end=args.t_end)
    region = task.region
    out: dict = {"noise": task.noise, "region_pixels": int(region.sum()), "t_end": sampler.t_start + sampler.steps * sampler.step_size}

    sols = {}
    variants = (("posterior", None, True), ("posterior+repulsion", args.repulsion_sigma or default_repulsion_sigma(task), True),
                ("paper sampler", None, False))
    for label, rep, guided in variants:
        t0 = time.perf_counter()
        sol = solve(potential, task, y, sampler, chains=args.chains, repulsion_sigma=rep, guidance=guided,
                    generator=torch.Generator().manual_seed(args.seed + 1))
        sols[label] = sol
        out[label] = {**evaluate(sol, truth, task), "seconds": time.perf_counter() - t0,
                      "grad_evals_per_draw": sol.result.num_grad_evals, "guidance": guided}
        if rep is not None:
            out[label]["repulsion_sigma"] = rep
    for label in ("posterior", "paper sampler"):
        m = sols[label].mean
        out[f"{label} mean"] = {"psnr": baseline_psnr(m, truth, task), "ssim": float(ssim(m.clamp(-1, 1), truth).mean())}
    mean = sols["posterior"].mean

    nn_img = nearest_neighbour_baseline(task, y, domain.train_data().float())
    out["nearest neighbour"] = {"psnr": baseline_psnr(nn_img, truth, task), "ssim": float(ssim(nn_img, truth).mean())}
    field = compile_field(potential, domain.space)
    x0 = domain.sample_source(truth.shape[0], generator=torch.Generator().manual_seed(args.seed + 2))
    uncond = sampler.run(field, x0, generator=torch.Generator().manual_seed(args.seed + 3)).samples.detach().clamp(-1, 1)
    out["unconditional"] = {"psnr": baseline_psnr(uncond, truth, task), "ssim": float(ssim(uncond, truth).mean())}
    # the measurement itself as a reconstruction (y on observed pixels, 0 = grey elsewhere)
    out["measurement"] = {"psnr": float(psnr(y.clamp(-1, 1), truth, mask=region).mean()),
                          "ssim": float(ssim(y.clamp(-1, 1), truth).mean())}

    shown_y = torch.where(task.observed.bool(), y, torch.full_like(y, -1.0)) if task.operator is None else y
    k = min(args.grid_images, truth.shape[0])
    rows = [truth[:k], shown_y[:k]]
    rows += [sols["posterior"].samples[:k, j] for j in range(min(2, args.chains))]
    rows += [sols["posterior+repulsion"].samples[:k, j] for j in range(min(2, args.chains))]
    rows += [mean[:k], nn_img[:k], uncond[:k]]
    fig = plotting.plot_image_grid(
        torch.cat(rows).clamp(-1, 1), nrow=k,
        title=f"{name}: truth / measurement / 2 draws / 2 draws +repulsion / mean / nearest nb. / uncond.",
    )
    out["grid"] = str(plotting.save_figure(fig, out_dir / f"{name}.png"))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="trained EM digits run")
    parser.add_argument("--train-if-missing", action="store_true", help="train the run first if it is absent")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--num-images", type=int, default=None, help="held-out digits per task (full 64, quick 8)")
    parser.add_argument("--chains", type=int, default=16, help="posterior draws per measurement (16)")
    parser.add_argument("--t-end", type=float, default=None, help="sampler end time tau_s (default: the run's sample_t_end)")
    parser.add_argument("--noise", nargs="*", default=[], metavar="TASK=STD",
                        help=f"observation noise overrides (defaults {TASK_DEFAULT_NOISE})")
    parser.add_argument("--repulsion-sigma", type=float, default=None,
                        help="repulsion bandwidth (default: inverse.default_repulsion_sigma, sqrt of the region's pixels)")
    parser.add_argument("--grid-images", type=int, default=12, help="digits shown per grid (12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "digits_inverse", help="grid folder")
    # settings for --train-if-missing (digits_quality's defaults)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--phase2-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-warmup", type=int, default=None)
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--langevin-steps", type=int, default=None)
    args = parser.parse_args(argv)
    q = args.quick
    args.num_images = args.num_images or (8 if q else 64)
    args.steps = args.steps or (30 if q else 500)
    args.phase2_steps = args.phase2_steps if args.phase2_steps is not None else (5 if q else 100)
    args.lr_warmup = args.lr_warmup if args.lr_warmup is not None else (5 if q else 50)
    args.langevin_steps = args.langevin_steps or (5 if q else 10)
    args.samples = 64
    noise = {}
    for item in args.noise:
        task, _, value = item.partition("=")
        if task not in TASKS or not value:
            parser.error(f"--noise takes TASK=STD with TASK in {TASKS}, got {item!r}")
        noise[task] = float(value)
    args.noise = noise
    set_threads(args.threads)

    t_start = time.perf_counter()
    ensure_run(args.run_dir, args)
    potential, cfg, domain = load_potential(args.run_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {name: run_task(name, potential, cfg, domain, args, args.out) for name in args.tasks}
    total_s = time.perf_counter() - t_start

    t_end = args.t_end if args.t_end is not None else cfg.sample_t_end
    print(f"\n## Digits inverse problems ({args.num_images} held-out digits, {args.chains} draws each, Heun Langevin "
          f"dt={cfg.step_size:g} to t_end={t_end:g}, eps_max={cfg.eps_max:g}, tau*={cfg.tau_star:g}; run {args.run_dir}; "
          f"{torch.get_num_threads()} thread(s))\n")
    print("PSNR in dB on the task region (missing pixels for inpainting, all pixels otherwise), mean over draws; "
          "SSIM on the whole image; diversity = mean pairwise L2 distance among the draws of one digit\n")
    methods = ["posterior", "posterior+repulsion", "posterior mean", "paper sampler", "paper sampler mean",
               "nearest neighbour", "unconditional", "measurement"]
    rows = []
    for name, res in results.items():
        for m in methods:
            r = res[m]
            rows.append([name, res["noise"], m, r["psnr"], r["ssim"], r.get("diversity", math.nan)])
    print(markdown_table(["task", "noise", "method", "PSNR dB", "SSIM", "diversity"], rows))

    print("\n### Checks\n")
    verdicts, rows = {}, []
    for name, res in results.items():
        p, pr = res["posterior"], res["posterior+repulsion"]
        v = {
            "posterior_beats_nn": p["psnr"] > res["nearest neighbour"]["psnr"],
            "posterior_beats_unconditional": p["psnr"] > res["unconditional"]["psnr"],
            "mean_beats_nn": res["posterior mean"]["psnr"] > res["nearest neighbour"]["psnr"],
            "guidance_gain_db": res["posterior mean"]["psnr"] - res["paper sampler mean"]["psnr"],
            "repulsion_raises_diversity": pr["diversity"] > p["diversity"],
            "repulsion_psnr_drop_db": p["psnr"] - pr["psnr"],
        }
        v["repulsion_ok"] = v["repulsion_raises_diversity"] and v["repulsion_psnr_drop_db"] < MAX_PSNR_DROP_DB
        verdicts[name] = v
        yn = lambda b: "yes" if b else "NO"  # noqa: E731
        rows.append([name, yn(v["posterior_beats_nn"]), yn(v["mean_beats_nn"]), yn(v["posterior_beats_unconditional"]),
                     v["guidance_gain_db"], pr["diversity"] / p["diversity"], v["repulsion_psnr_drop_db"],
                     yn(v["repulsion_ok"])])
    print(markdown_table(["task", "draws > NN", "mean > NN", "draws > uncond.", "guidance gain dB (mean)",
                          "diversity ratio (rep/no rep)", "PSNR drop dB", f"rep. ok (< {MAX_PSNR_DROP_DB} dB)"], rows))
    print("\ngrids:")
    for res in results.values():
        print(f"  {res['grid']}")
    print(f"\ntotal wall time {total_s:.0f} s")
    payload = {
        "name": NAME, "quick": q, "run_dir": str(args.run_dir), "num_images": args.num_images, "chains": args.chains,
        "t_end": t_end, "repulsion_sigma": args.repulsion_sigma, "noise_overrides": args.noise, "seed": args.seed, "results": results, "checks": verdicts,
        "config": cfg.to_dict(), "total_seconds": total_s, "env": env_info(torch.get_num_threads()),
    }
    if not args.no_json:
        path = write_result(NAME + ("_quick" if q else ""), payload)
        print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
