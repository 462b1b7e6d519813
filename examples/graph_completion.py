"""Conditional sampling on graphs with the energy DSL: completion, property steering, repulsion.

With a trained graph run (``energyflow train --domain graph --dataset community_small``):

    python examples/graph_completion.py RUN_DIR

Without one, a tiny potential is trained on community_small first (OT flow matching only,
a few hundred steps, one thread, about a minute), which is enough to see the mechanics,
not to judge the model. The script prints

1. completion of held-out test graphs with 30 % of each graph's pairs hidden: accuracy on
   the hidden pairs against predicting the training edge density's majority class, the
   AUC of the model's score against the known-common-neighbours heuristic, and how often
   the known pairs were kept;
2. steering by a soft constraint on the edge count, the triangle count and the maximum
   degree: the statistic of steered and unconditional samples (same noise) and the GDSS
   MMD² of both against the test graphs, with the train-vs-test floor;
3. repulsion between the graphs of a batch, on the adjacency and on the sorted degrees:
   diversity with and without it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from energyflow.domains.graph.conditional import (
    complete, completion_accuracy, diverse, measure, random_known_mask, steer,
)
from energyflow.domains.graph.metrics import mmd_table
from energyflow.training.run import load_potential, sampler_for


def train_tiny(run_dir: str, steps: int, seed: int) -> None:
    from energyflow.training import Trainer, resolve_config

    cfg = resolve_config("community_small", overrides=dict(
        steps=steps, phase1_steps=steps, batch_size=64, hidden=32, depth=2, network_options={"edge_hidden": 8},
        lr_warmup_steps=50, eval_every=10**9, checkpoint_every=10**9, log_every=100, device="cpu", seed=seed,
        eval_samples=4))

    class NoPlots(Trainer):
        def plot(self):  # the run's sample plot is not needed here
            return []

    NoPlots(cfg, run_dir).fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?", help="a trained graph run (default: train a tiny one)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of the tiny model")
    parser.add_argument("--hide", type=float, default=0.3, help="share of each graph's pairs hidden")
    parser.add_argument("--samples", type=int, default=32, help="graphs per steering / repulsion run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    tmp = None
    run_dir = args.run_dir
    if run_dir is None:
        tmp = tempfile.TemporaryDirectory()
        run_dir = tmp.name
        train_tiny(run_dir, args.steps, args.seed)
        print(f"trained a tiny community_small potential for {args.steps} steps in {time.time() - t0:.0f} s")
    potential, cfg, domain = load_potential(run_dir)
    sampler = sampler_for(cfg)
    print(f"run {run_dir}: {cfg.dataset}, sampler dt={sampler.step_size} to t={cfg.sample_t_end} "
          f"({sampler.method}), tau*={cfg.tau_star}, eps_max={cfg.eps_max}")

    # 1. completion -------------------------------------------------------------------------
    truth = domain.test_data()
    known = random_known_mask(truth, args.hide, torch.Generator().manual_seed(args.seed))
    t = time.time()
    out = complete(potential, domain, truth, known, sampler=sampler, chains=4,
                   generator=torch.Generator().manual_seed(args.seed + 1))
    s = completion_accuracy(out, truth)
    print(f"\n1. completion of {truth['adj'].shape[0]} test graphs, {args.hide:.0%} of pairs hidden "
          f"({s.hidden_pairs} hidden, {s.known_pairs} known; 4 chains; {time.time() - t:.0f} s)")
    print(f"   training edge density {s.edge_density:.3f}; edges among the hidden pairs {s.hidden_edge_fraction:.3f}")
    print(f"   {'predictor':<36}{'hidden acc':>11}{'hidden AUC':>11}{'known kept':>11}")
    print(f"   {'Energy Matching posterior':<36}{s.hidden_accuracy:>11.3f}{s.hidden_auc:>11.3f}{s.known_kept:>11.3f}")
    print(f"   {'edge frequency (majority class)':<36}{s.baseline_accuracy:>11.3f}{0.5:>11.3f}{'':>11}")
    print(f"   {'known common neighbours (AUC only)':<36}{'':>11}{s.common_neighbours_auc:>11.3f}{'':>11}")

    # 2. steering ------------------------------------------------------------------------------
    train_graphs = domain.train_graphs
    floor = mmd_table(train_graphs, domain.test_graphs, "gdss")
    print(f"\n2. steering ({args.samples} graphs each, the control is the same run without the term)")
    print(f"   {'statistic':<15}{'target':>7}{'control':>9}{'steered':>9}{'shift':>8}   "
          f"MMD² deg / clus / orbit / spec: control -> steered")
    for name, factor, scale, options in (("edge_count", 1.5, 2.0, {}), ("triangle_count", 1.5, 4.0, {}),
                                         ("max_degree", 1.5, 0.5, {"temperature": 0.5})):
        target = float(measure(train_graphs, name).mean()) * factor
        t = time.time()
        r = steer(potential, domain, args.samples, name, target, scale=scale, options=options, sampler=sampler,
                  generator=torch.Generator().manual_seed(args.seed + 2))
        c = r.control_values.mean()
        mmds = " / ".join(f"{r.control_mmd[k]:.3f}->{r.mmd[k]:.3f}" for k in ("degree", "clustering", "orbit",
                                                                              "spectral"))
        print(f"   {name:<15}{target:>7.1f}{c:>9.1f}{r.values.mean():>9.1f}{r.shift:>+8.1f}   {mmds}"
              f"  ({time.time() - t:.0f} s)")
    print(f"   train-vs-test floor: " + " / ".join(f"{floor[k]:.3f}" for k in ("degree", "clustering", "orbit",
                                                                          "spectral")))

    # 3. repulsion -----------------------------------------------------------------------------
    print(f"\n3. repulsion between the {args.samples} graphs of a batch (tempered, Repulsion on the graph leaf)")
    print(f"   {'repelled by':<22}{'unique':>8}{'degree L1':>11}{'spectral W1':>13}   MMD² deg / clus / orbit / spec")
    rows = []
    for on, sigma in (("adjacency", 2.0), ("degrees", 2.0)):
        r = diverse(potential, domain, args.samples, sigma=sigma, on=on, sampler=sampler,
                    generator=torch.Generator().manual_seed(args.seed + 3))  # the same control each time
        rows += [("nothing (control)", r.control_diversity, r.control_mmd)] if not rows else []
        rows.append((f"{on}, sigma {sigma:g}", r.diversity, r.mmd))
    for label, d, m in rows:
        print(f"   {label:<22}{d.unique:>8.2f}{d.degree_l1:>11.2f}{d.spectral_w1:>13.3f}   "
              + " / ".join(f"{m[k]:.3f}" for k in ("degree", "clustering", "orbit", "spectral")))
    print(f"\ntotal {time.time() - t0:.0f} s")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
