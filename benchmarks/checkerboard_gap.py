"""Where Energy Matching loses to OT-CFM on Gaussian -> checkerboard (``train_quality.py``).

``train_quality.py`` trains each method 1000 steps and finds EM at W2 0.61 against
OT-CFM's 0.40 on the checkerboard (moons: EM wins). This script takes the checkerboard
EM setting apart, one factor at a time, on the same data, seed and evaluation:

- ``EM``: the benchmark's run (toy preset, lr 1e-3, 500 OT steps then 500 with CD);
- ``OT only``: the same potential trained by the phase-1 flow loss alone, as long
  (1000 steps) and four times as long (4000 steps), to separate the scalar potential's
  fit from what contrastive divergence adds;
- ``EM`` with a longer phase 1 (3500 + 500) or a longer phase 2 (500 + 2000);

and samples every model with the Energy Matching sampler stopped at several tau_s (the
Langevin phase at eps_max runs from t = 1 to tau_s) and with the noiseless gradient flow
to t = 2. W2 (exact, POT) of ``--samples`` points against fresh data; the "data" row is
fresh data against the same reference.

Run:
    .venv/bin/python benchmarks/checkerboard_gap.py --threads 1
    .venv/bin/python benchmarks/checkerboard_gap.py --quick
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import base_parser, env_info, markdown_table, set_threads, write_result
else:
    from ._common import base_parser, env_info, markdown_table, set_threads, write_result

import torch

from energyflow.domains.toy import ToyDomain
from energyflow.field import compile as compile_field
from energyflow.metrics import wasserstein2
from energyflow.samplers.flow import GradientFlow
from energyflow.training import Trainer, resolve_config
from energyflow.training.run import sampler_for

NAME = "checkerboard_gap"
TASK = dict(dataset="checkerboard", source="gaussian")


def train(run_dir: Path, steps: int, phase1_steps: int, args) -> tuple[Trainer, float]:
    cfg = resolve_config("toy", overrides=dict(
        **TASK, steps=steps, phase1_steps=phase1_steps, lr=args.lr, device="cpu", seed=args.seed,
        num_langevin_steps=args.langevin_steps, lr_warmup_steps=100,
    ))
    trainer = Trainer(cfg, run_dir)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return trainer, time.perf_counter() - t0


def sweep(trainer: Trainer, x0: torch.Tensor, ref: torch.Tensor, t_ends: list[float], seed: int) -> dict[str, float]:
    field = compile_field(trainer.sampling_potential(), trainer.domain.space)
    out = {}
    for t_end in t_ends:
        run = sampler_for(trainer.cfg, t_end=t_end)
        x = run.run(field, x0, generator=torch.Generator().manual_seed(seed)).samples
        out[f"langevin to {t_end:g}"] = wasserstein2(x.detach(), ref)
    flow = GradientFlow(step_size=trainer.cfg.step_size, t_end=2.0, method="heun", temperature=0.0)
    out["gradient flow to 2"] = wasserstein2(flow.run(field, x0).samples.detach(), ref)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--langevin-steps", type=int, default=None, help="M for CD negatives (200; quick 10)")
    parser.add_argument("--samples", type=int, default=None, help="points per evaluation (2000; quick 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    quick = args.quick
    args.langevin_steps = args.langevin_steps or (10 if quick else 200)
    n = args.samples or (300 if quick else 2000)
    scale = 0.02 if quick else 1.0
    domain = ToyDomain(**TASK)
    ref = domain.sample_data(n, generator=torch.Generator().manual_seed(10_000 + args.seed))
    ref2 = domain.sample_data(n, generator=torch.Generator().manual_seed(20_000 + args.seed))
    x0 = domain.sample_source(n, generator=torch.Generator().manual_seed(30_000 + args.seed))
    t_ends = [1.0, 1.25, 1.5, 2.0]
    runs = {
        "EM (500 OT + 500 OT+CD)": (int(1000 * scale), int(500 * scale)),
        "OT only, 1000 steps": (int(1000 * scale), int(1000 * scale)),
        "OT only, 4000 steps": (int(4000 * scale), int(4000 * scale)),
        "EM (3500 OT + 500 OT+CD)": (int(4000 * scale), int(3500 * scale)),
        "EM (500 OT + 2000 OT+CD)": (int(2500 * scale), int(500 * scale)),
    }
    results: dict = {"data": {"w2": wasserstein2(ref2, ref)}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, (steps, phase1)) in enumerate(runs.items()):
            trainer, seconds = train(Path(tmp) / str(i), steps, phase1, args)
            results[label] = {**sweep(trainer, x0, ref, t_ends, 40_000 + args.seed), "train_s": seconds}
    columns = [f"langevin to {t:g}" for t in t_ends] + ["gradient flow to 2"]
    rows = [[label] + [f"{r[c]:.3f}" for c in columns] + [f"{r['train_s']:.0f}"]
            for label, r in results.items() if label != "data"]
    rows.append(["data vs data"] + [f"{results['data']['w2']:.3f}"] * len(columns) + ["-"])
    print(f"## Checkerboard: W2 by training and sampler ({n} samples, lr {args.lr:g}, M={args.langevin_steps}, "
          f"seed {args.seed}, {args.threads} thread(s))\n")
    print(markdown_table(["model", *[f"W2, {c}" for c in columns], "train s"], rows))
    if not quick and not args.no_json:
        print(f"\nwrote {write_result(NAME, {'results': results, 'env': env_info(args.threads)})}")
    return results


if __name__ == "__main__":
    main()
