"""Graph generation quality: Energy Matching on community_small (and grid / planar / SBM), GDSS protocol.

Protocol (GDSS, Jo et al. 2022, ``sampler.py``/``evaluation``): as many graphs are generated
as the test split holds (20 for community_small), their MMD² of degree, clustering and
4-node orbit statistics against the test graphs is computed with GDSS's kernels (Gaussian
EMD, sigma 1 / 0.1; orbit: plain Gaussian, sigma 30), and the numbers are averaged over 3
sampling seeds. The same samples are also scored in the SPECTRE/DiGress convention
(Gaussian total variation) and, for planar and SBM, by validity, uniqueness, novelty and
V.U.N. (:mod:`energyflow.domains.graph.validity`; SBM validity with our own block fit,
graph-tool being unavailable here).

The data floor is printed beside every result: ``--floor-draws`` random sets of
training graphs, each as large as the test split, scored against the test graphs the same
way (train vs test, same set sizes). With 20 graphs per side MMD² estimates are noisy
(their standard deviation over draws is printed too). GDSS's own data floor was measured
on its shipped ``data/community_small.pkl`` (first 20 graphs test, the rest train, 10
draws of 20 training graphs): degree 0.035, clustering 0.034, orbit 0.009 — the
published GDSS numbers sit about on it. Pass ``--gdss-pickle PATH`` (a local copy of that
file; it is not shipped, the GDSS repository has no licence) to recompute it.

The model is energyflow's ``Trainer`` on the dataset's preset (``energyflow train
--preset community_small``), trained here for ``--steps`` steps (``--phase2-steps`` of
them with contrastive divergence) and timed: the issue's budget is 30 minutes on this
2-core CPU. The run directory is kept (``--run-dir``) and reused with ``--reuse``.
Sampling uses the preset's Energy Matching sampler to ``--t-end``.

Timings: training seconds per graph (median step time / batch size, from the run's
``metrics.jsonl``), sampling seconds per graph (one batch of ``--time-batch`` graphs).

Run:
    .venv/bin/python benchmarks/graph_quality.py --threads 1             # community_small, ~30 min
    .venv/bin/python benchmarks/graph_quality.py --threads 1 --quick     # smoke run (300 steps, 200 of them CD; ~5 min)
    .venv/bin/python benchmarks/graph_quality.py --dataset planar --threads 1
"""

from __future__ import annotations

import json
import pickle
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import base_parser, env_info, markdown_table, set_threads, write_result
else:  # imported as benchmarks.graph_quality
    from ._common import base_parser, env_info, markdown_table, set_threads, write_result

import networkx as nx
import numpy as np
import torch

from energyflow.domains.graph.metrics import mmd_table
from energyflow.training import Trainer, resolve_config
from energyflow.training.run import load_potential, sampler_for

NAME = "graph_quality"
REPO = Path(__file__).resolve().parent.parent
STATS = ("degree", "clustering", "orbit", "spectral")

# Published MMD² on community_small, GDSS convention (GDSS, Table 1).
PUBLISHED = {
    "community_small": {
        "GDSS": {"degree": 0.045, "clustering": 0.086, "orbit": 0.007},
        "EDP-GNN": {"degree": 0.053, "clustering": 0.144, "orbit": 0.026},
        "GraphRNN": {"degree": 0.080, "clustering": 0.120, "orbit": 0.040},
    },
}
# GDSS's data floor, measured on its shipped community_small.pkl (see the module docstring).
GDSS_FLOOR = {"degree": 0.0353, "clustering": 0.0338, "orbit": 0.0088, "spectral": 0.0698}
# Published planar V.U.N. (%), SPECTRE convention.
PUBLISHED_VUN = {"planar": {"DiGress": 77.5, "GruM": 90.0, "DeFoG": 99.5}}
TARGET = PUBLISHED["community_small"]["GDSS"]


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def score(graphs: list, domain) -> dict[str, float]:
    """Both MMD conventions (``spectre_`` prefix for SPECTRE's), uniqueness, novelty, V.U.N. where defined."""
    out = domain.metrics(graphs)  # GDSS MMD² against the test split, and the fractions the data set has
    out.update({f"spectre_{k}": v for k, v in mmd_table(graphs, domain.test_graphs, "spectre").items()})
    return out


def data_floor(domain, draws: int, train: list | None = None, test: list | None = None) -> dict[str, list[float]]:
    """MMD² of ``draws`` random test-sized sets of training graphs against the test graphs."""
    train = domain.train_graphs if train is None else train
    test = domain.test_graphs if test is None else test
    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {}
    for _ in range(draws):
        pick = [train[i] for i in rng.choice(len(train), len(test), replace=False)]
        for k, v in mmd_table(pick, test, "gdss").items():
            rows.setdefault(k, []).append(v)
        for k, v in mmd_table(pick, test, "spectre").items():
            rows.setdefault(f"spectre_{k}", []).append(v)
    return rows


def gdss_floor(path: Path, draws: int) -> dict[str, float]:
    """GDSS's data floor from its pickle (trusted local file; GDSS's split: first 20% test)."""
    with open(path, "rb") as handle:
        graphs = [nx.convert_node_labels_to_integers(nx.Graph(g)) for g in pickle.load(handle)]  # noqa: S301
    k = int(0.2 * len(graphs))
    rows = data_floor(None, draws, train=graphs[k:], test=graphs[:k])
    return {s: float(np.mean(rows[s])) for s in STATS}


def train(args, run_dir: Path) -> dict:
    overrides = {"steps": args.steps, "phase1_steps": args.steps - args.phase2_steps, "eval_every": 10**9,
                 "checkpoint_every": max(1, args.steps // 10), "log_every": 10}
    if args.lr is not None:
        overrides["lr"] = args.lr
    cfg = resolve_config(preset=args.dataset, overrides=overrides)
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    trainer = Trainer(cfg, run_dir)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    return {"train_seconds": seconds, "config": cfg.to_dict()}


def step_seconds(run_dir: Path) -> float:
    times = []
    with open(run_dir / "metrics.jsonl") as handle:
        for line in handle:
            rec = json.loads(line)
            if rec.get("kind") == "train" and "seconds" in rec:
                times.append(rec["seconds"])
    return statistics.median(times)


def main() -> None:
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--dataset", default="community_small", choices=["community_small", "grid", "planar", "sbm"])
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--phase2-steps", type=int, default=None, help="steps with contrastive divergence")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/bench/graph_<dataset>")
    p.add_argument("--reuse", action="store_true", help="evaluate the run in --run-dir without training")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds (GDSS: 3)")
    p.add_argument("--t-end", type=float, default=None, help="sampler end time (default: the preset's)")
    p.add_argument("--floor-draws", type=int, default=10)
    p.add_argument("--time-batch", type=int, default=64)
    p.add_argument("--gdss-pickle", type=Path, default=None, help="GDSS's data/community_small.pkl, to recompute its floor")
    args = p.parse_args()
    set_threads(args.threads)
    preset = resolve_config(preset=args.dataset)
    if args.steps is None:
        args.steps = 300 if args.quick else preset.steps
    if args.phase2_steps is None:
        args.phase2_steps = min(args.steps, preset.steps - preset.warmup_steps)
    if args.quick:
        args.seeds, args.floor_draws, args.time_batch = 1, 2, 16
    run_dir = args.run_dir or REPO / "runs" / "bench" / f"graph_{args.dataset}{'_quick' if args.quick else ''}"

    info = {} if args.reuse else train(args, run_dir)
    potential, cfg, domain = load_potential(run_dir)
    t_end = args.t_end if args.t_end is not None else cfg.sample_t_end
    sampler = sampler_for(cfg, t_end=t_end)
    from energyflow.field import compile as compile_field

    field = compile_field(potential, domain.space)
    n = len(domain.test_graphs)
    per_seed: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        x0 = domain.sample_source(n, generator=torch.Generator().manual_seed(1000 + seed))
        out = sampler.run(field, x0, generator=torch.Generator().manual_seed(seed))
        for k, v in score(domain.decode(out.samples), domain).items():
            per_seed.setdefault(k, []).append(v)
    floor = data_floor(domain, args.floor_draws)
    x0 = domain.sample_source(args.time_batch, generator=torch.Generator().manual_seed(7))
    t0 = time.perf_counter()
    sampler.run(field, x0, generator=torch.Generator().manual_seed(7))
    sample_per_graph = (time.perf_counter() - t0) / args.time_batch
    train_per_graph = step_seconds(run_dir) / cfg.batch_size
    gfloor = gdss_floor(args.gdss_pickle, args.floor_draws) if args.gdss_pickle else GDSS_FLOOR

    ours = {k: mean_sd(v) for k, v in per_seed.items()}
    fl = {k: mean_sd(v) for k, v in floor.items()}
    headers = ["statistic (GDSS MMD²)", "energyflow (mean ± sd)", "data floor (mean ± sd)", "excess over floor"]
    pub = PUBLISHED.get(args.dataset, {})
    for name in pub:
        headers.append(name)
    if args.dataset == "community_small":
        headers += ["GDSS excess over its floor"]
    rows = []
    for s in STATS:
        row = [s, f"{ours[s][0]:.4f} ± {ours[s][1]:.4f}", f"{fl[s][0]:.4f} ± {fl[s][1]:.4f}", f"{ours[s][0] - fl[s][0]:+.4f}"]
        row += [pub[name].get(s, "-") for name in pub]
        if args.dataset == "community_small":
            row.append(f"{TARGET[s] - gfloor[s]:+.4f}" if s in TARGET else "-")
        rows.append(row)
    print(f"\n{args.dataset}: {n} generated vs {n} test graphs, {args.seeds} sampling seeds, t_end {t_end:g}")
    print(markdown_table(headers, rows))
    spectre = [[s, f"{ours['spectre_' + s][0]:.4f}", f"{fl['spectre_' + s][0]:.4f}"] for s in STATS]
    print("\nSPECTRE/DiGress convention (Gaussian TV)")
    print(markdown_table(["statistic", "energyflow", "data floor"], spectre))
    extra = [k for k in ("valid", "unique", "novel", "vun") if k in ours]
    print("\n" + markdown_table(["fraction", "energyflow"], [[k, f"{ours[k][0]:.3f}"] for k in extra]))
    if args.dataset in PUBLISHED_VUN and "vun" in ours:
        print("published V.U.N. (%): " + ", ".join(f"{k} {v}" for k, v in PUBLISHED_VUN[args.dataset].items()))
    if info:
        print(f"\ntraining: {args.steps} steps in {info['train_seconds'] / 60:.1f} min "
              f"({args.threads} thread(s)); budget 30 min")
    print(f"training {train_per_graph * 1e3:.2f} ms per graph per step; sampling {sample_per_graph * 1e3:.1f} ms per graph "
          f"({sampler.steps} steps)")
    met = {s: ours[s][0] <= TARGET[s] for s in TARGET} if args.dataset == "community_small" else {}
    if met:
        print("at or below GDSS's published: " + ", ".join(f"{s} {'yes' if ok else 'no'}" for s, ok in met.items()))
    if not args.no_json:
        payload = {"env": env_info(args.threads), "dataset": args.dataset, "steps": args.steps,
                   "phase2_steps": args.phase2_steps, "t_end": t_end, "seeds": args.seeds, "samples_per_seed": n,
                   "energyflow": per_seed, "data_floor": floor, "gdss_floor": gfloor, "published": pub,
                   "train_ms_per_graph": train_per_graph * 1e3, "sample_ms_per_graph": sample_per_graph * 1e3,
                   "target_met": met, **info}
        print(f"wrote {write_result(NAME + ('' if args.dataset == 'community_small' else '_' + args.dataset) + ('_quick' if args.quick else ''), payload)}")


if __name__ == "__main__":
    main()
