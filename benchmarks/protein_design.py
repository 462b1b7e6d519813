"""AAV inverse design (GGS's medium and hard tasks): the paper's pipeline from our own parts, timed, 5 seeds.

Pipeline per task (each model trained once and cached; ``--fresh`` uses an empty cache so
the whole pipeline is timed):

1. the oracle (GGS's CNN on the ground truth less 10 %; evaluation only);
2. the guidance predictor (same CNN, on the task file only), and GGS's graph-smoothed one
   (``--predictors plain smoothed``: both by default; the smoothed one is the plain one's
   scores on 50,000 single substitutions of the task file, smoothed on their Hamming kNN
   graph and learnt by a fresh CNN);
3. the sequence VAE (latent 16) on the task file;
4. the Energy Matching potential on the VAE's latent means (``--preset aav-medium`` /
   ``aav-hard``: the paper's tau* 0.9, eps_max 0.1, dt 0.01, lambda_cd 1e-4, with M = 100
   negatives' steps instead of 200 and an MLP potential for the CPU);
5. design with the DSL, ``V + observe(fitness = 1 | predictor(softmax(decode(z))), zeta)``
   (zeta 0.01 / 0.009, tau_s 1.7 / 1.3, the [-1, 1] clamp), 512 latents per seed;
6. GGS's selection and metrics: decode, deduplicate, the top 128 by the predictor, the
   oracle's median normalised fitness, mean pairwise Levenshtein (diversity, GGS's code;
   the median too), median distance to the task file (novelty).

Seeds are independent generators (0..4) over one trained pipeline per task. Rows beside
ours: GGS's published table (their own oracle: the numbers are comparable in protocol,
not to the digit) and a data floor, the task file's own best 128 sequences (by their
measured score) through the same oracle and metrics (novelty 0 by construction), and the
potential alone (the observation's likelihood flattened, zeta = 1e6) to show what the
observation adds. ``--sweep`` adds the repulsion trade-off (quadratic with the clamp, and
the bounded RBF) at the same sampling budget, on the medium task, and plots it.

Designs (``--designs``, one row each, ``GUIDE[:SELECT]``): ``plain`` (GGS's protocol with
our unsmoothed predictor: it guides and selects), ``smoothed`` (GGS's own: the smoothed
predictor guides and selects), ``plain:smoothed`` (the plain predictor guides, the smoothed
one selects) and ``blend:smoothed`` (the mean of the two guides, the smoothed one selects).
A suffix ``@D`` makes the selection trade the selecting predictor's score for distance until
the 128's mean pairwise distance reaches ``D`` (``blend:smoothed@4.5``: GGS's hard diversity;
:func:`~energyflow.domains.protein.design.select_diverse`, no oracle involved).

Run:
    .venv/bin/python benchmarks/protein_design.py --threads 2               # both tasks, 5 seeds
    .venv/bin/python benchmarks/protein_design.py --threads 2 --sweep       # and the repulsion sweep
    .venv/bin/python benchmarks/protein_design.py --threads 1 --tasks hard  # one task; the saved file keeps the other
    .venv/bin/python benchmarks/protein_design.py --threads 2 --fresh --tasks medium   # time it from nothing
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import RESULTS_DIR, base_parser, env_info, markdown_table, set_threads, write_result
else:  # imported as benchmarks.protein_design
    from ._common import RESULTS_DIR, base_parser, env_info, markdown_table, set_threads, write_result

import numpy as np
import torch

NAME = "protein_design"
REPO = Path(__file__).resolve().parent.parent
QUADRATIC = (0.01, 0.03, 0.1)
RBF = (300.0, 1000.0, 3000.0)


#: The designs run by default, GUIDE[:SELECT]: GGS's way (one predictor guides and selects), the
#: plain predictor's guidance with the smoothed one's selection, and the blend's guidance.
DESIGNS = ("plain", "smoothed", "plain:smoothed", "blend:smoothed")


def _split(design):
    """``"GUIDE[:SELECT][@D]"`` -> ``(guide, select or None, min_diversity or None)``."""
    names, _, target = design.partition("@")
    guide, _, select = names.partition(":")
    return guide, select or None, float(target) if target else None


def _check(design):
    """Why ``design`` is not ``GUIDE[:SELECT][@D]``, or None."""
    names = design.partition("@")[0]
    if any(part not in ("plain", "smoothed", "blend") for part in names.split(":")) or names.count(":") > 1:
        return "GUIDE or GUIDE:SELECT with plain, smoothed or blend"
    try:
        target = _split(design)[2]
    except ValueError:
        target = -1.0
    if "@" in design and not (target is not None and 0 <= target < float("inf")):
        return "@D needs a finite diversity target >= 0"
    return None


def _label(design):
    guide, select, target = _split(design)
    return (f"{guide} predictor" + (f", selected by {select}" if select and select != guide else "")
            + (f", diversity >= {target:g} by the selection" if target is not None else ""))


def _row(label, s):
    return [label, f"{s['median_fitness']['mean']:.3f} ± {s['median_fitness']['sd']:.3f}",
            f"{s['diversity']['mean']:.2f} ± {s['diversity']['sd']:.2f}",
            f"{s['median_diversity']['mean']:.1f}", f"{s['novelty']['mean']:.2f} ± {s['novelty']['sd']:.2f}",
            f"{s['unique_decoded']['mean']:.0f}"]


def _floor(task, oracle):
    from energyflow.domains.protein import data as D
    from energyflow.domains.protein.metrics import design_metrics
    from energyflow.domains.protein.models import predict

    data = D.load_task(task)
    order = np.argsort(-data.scores, kind="stable")[:128]
    seqs = [data.sequences[i] for i in order]
    return design_metrics(seqs, predict(oracle, D.encode(seqs)), list(data.sequences))


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["medium", "hard"], choices=["medium", "hard"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--sweep", action="store_true", help="also the repulsion sweep (medium task)")
    p.add_argument("--sweep-seeds", type=int, default=2, help="seeds per sweep setting")
    p.add_argument("--fresh", action="store_true", help="an empty model cache and new runs: time the whole pipeline")
    p.add_argument("--runs", type=Path, default=REPO / "runs", help="where runs/aav_<task> live (reused if there)")
    p.add_argument("--designs", nargs="+", default=list(DESIGNS), metavar="GUIDE[:SELECT][@D]",
                   help="guidance[:selection] predictors to design with, one row each (plain, smoothed, blend; "
                        "@D: the selection trades predicted fitness for distance until the mean pairwise "
                        f"distance reaches D, DesignConfig.min_diversity; default {' '.join(DESIGNS)})")
    p.add_argument("--sweep-design", default="plain", metavar="GUIDE[:SELECT]",
                   help="the predictors of the repulsion sweep (default plain)")
    args = p.parse_args()
    for d in [*args.designs, args.sweep_design]:
        if (why := _check(d)) is not None:
            p.error(f"bad design {d!r}: {why}")
    set_threads(args.threads)
    if args.fresh:
        os.environ["ENERGYFLOW_CACHE"] = tempfile.mkdtemp(prefix="energyflow-cache-")
        args.runs = Path(tempfile.mkdtemp(prefix="energyflow-runs-"))

    from energyflow.domains.protein.design import PUBLISHED, design_run, plot_tradeoff
    from energyflow.domains.protein.models import train_oracle, train_vae
    from energyflow.domains.protein.smoothing import PREDICTORS
    from energyflow.training import Trainer, resolve_config

    seeds = tuple(range(args.seeds))
    payload = {"env": env_info(args.threads), "seeds": list(seeds), "tasks": {}}
    t0 = time.perf_counter()
    oracle = train_oracle()
    oracle_seconds = time.perf_counter() - t0
    payload["oracle"] = {**oracle.metrics, "seconds": oracle_seconds}
    print(f"oracle: held-out Spearman {oracle.metrics['heldout_spearman']:.3f} "
          f"({oracle.metrics['n_heldout']} sequences), {oracle_seconds:.0f} s")
    for task in args.tasks:
        times = {}
        predictors = {}
        names = list(dict.fromkeys(["plain", *(n for d in args.designs for n in _split(d)[:2] if n)]))
        for name in names:  # plain first: the smoothed one starts from it, the blend averages both
            t = time.perf_counter()
            predictors[name] = PREDICTORS.get(name)(task)
            times[f"predictor ({name})"] = time.perf_counter() - t
        t = time.perf_counter()
        vae = train_vae(task)
        times["vae"] = time.perf_counter() - t
        run = args.runs / f"aav_{task}"
        t = time.perf_counter()
        if not (run / "checkpoints" / "last.pt").is_file():
            cfg = resolve_config(preset=f"aav_{task}", overrides={"device": "cpu"})
            trainer = Trainer(cfg, run)
            trainer.fit()
        times["potential"] = time.perf_counter() - t
        summaries = {}
        for d in args.designs:
            guide, select, target = _split(d)
            t = time.perf_counter()
            _, summaries[d] = design_run(run, run / f"design_{d.replace(':', '_').replace('@', '_at')}", seeds=seeds,
                                         predictor=guide, select_by=select, min_diversity=target)
            times[f"design ({d})"] = time.perf_counter() - t
        # V alone: the likelihood flattened, selected by the first design's selector.
        guide0, select0, _ = _split(args.designs[0])
        first_select = select0 or guide0
        _, flat = design_run(run, None, seeds=seeds, zeta=1e6, select_by=first_select)
        floor = _floor(task, oracle)
        rows = [_row(f"Energy Matching (V + observe), {_label(d)}, ours", summ) for d, summ in summaries.items()]
        rows += [_row(f"V alone (zeta = 1e6), selected by the {first_select} predictor", flat),
                [f"data floor: the task file's best 128", f"{floor['median_fitness']:.3f}", f"{floor['diversity']:.2f}",
                 f"{floor['median_diversity']:.1f}", f"{floor['novelty']:.2f}", "-"]]
        rows += [[f"{k} (GGS paper)", f"{v[0]:.2f}", f"{v[1]:.1f}", "-", f"{v[2]:.1f}", "-"]
                 for k, v in PUBLISHED[task].items()]
        print(f"\nAAV {task}: top 128 of 512 latents, {len(seeds)} seeds, mean ± sd")
        print(markdown_table(["method", "median fitness", "diversity (mean)", "diversity (median)", "novelty",
                              "unique decoded"], rows))
        # One pipeline per design: the oracle (when timed), the VAE, the potential, the predictors it
        # needs (the smoothed one starts from the plain one; the blend averages both) and its design runs.
        shared = (oracle_seconds if args.fresh else 0.0) + times["vae"] + times["potential"]
        pipeline = {}
        for d in args.designs:
            need = {"plain", *(n for n in _split(d)[:2] if n)} | ({"smoothed"} if "blend" in d else set())
            pipeline[d] = shared + times[f"design ({d})"] + sum(times[f"predictor ({n})"] for n in need)
        for name, predictor in predictors.items():
            print(f"{name} predictor: Spearman {predictor.metrics['spearman_outside']:.3f} on the ground-truth sequences "
                  f"outside the task file ({predictor.metrics['spearman_top']:.3f} above its best)")
        print(f"VAE: exact {vae.metrics['train_exact']:.3f} / per residue {vae.metrics['train_per_residue']:.3f} "
              f"(held-out {vae.metrics['heldout_exact']:.3f} / {vae.metrics['heldout_per_residue']:.3f})")
        print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
              + " -> pipeline " + ", ".join(f"{v / 60:.1f} min ({k})" for k, v in pipeline.items())
              + (" (models cached: run with --fresh to time all)" if not args.fresh else " (from nothing)"))
        entry = {"summary": summaries, "potential_alone": flat, "data_floor": floor, "published": PUBLISHED[task],
                 "predictor": {name: m.metrics for name, m in predictors.items()}, "vae": vae.metrics,
                 "seconds": times, "pipeline_seconds": pipeline, "fresh": args.fresh}
        if args.sweep and task == "medium":
            sd = args.sweep_design
            guide, select, target = _split(sd)
            sweep_rows = [{"label": "none", "summary": summaries[sd] if sd in summaries
                           else design_run(run, None, seeds=seeds, predictor=guide, select_by=select,
                                           min_diversity=target)[1]}]
            sweep_seeds = tuple(range(args.sweep_seeds))
            entry["sweep_design"] = sd
            for kind, strengths in (("quadratic", QUADRATIC), ("rbf", RBF)):
                for s in strengths:
                    _, summ = design_run(run, None, seeds=sweep_seeds, repulsion=kind, strength=s, predictor=guide,
                                         select_by=select, min_diversity=target)
                    sweep_rows.append({"label": f"{kind}:{s:g}", "summary": summ})
                    print(f"  repulsion {kind}:{s:g}: fitness {summ['median_fitness']['mean']:.3f}, "
                          f"diversity {summ['diversity']['mean']:.2f}, novelty {summ['novelty']['mean']:.2f}", flush=True)
            entry["sweep"] = sweep_rows
            plot = plot_tradeoff(sweep_rows, task, REPO / "benchmarks" / "results" / "protein_tradeoff.png")
            print(markdown_table(["repulsion", "median fitness", "diversity (mean)", "diversity (median)", "novelty",
                                  "unique decoded"], [_row(r["label"], r["summary"])[0:1] + _row(r["label"], r["summary"])[1:]
                                                      for r in sweep_rows]))
            print(f"plot: {plot}")
        payload["tasks"][task] = entry
    if not args.no_json:
        name = NAME + ("_fresh" if args.fresh else "")
        old = RESULTS_DIR / f"{name}.json"
        if old.is_file():  # a run of fewer tasks keeps the saved file's other tasks (their env kept with them)
            saved = json.loads(old.read_text())
            for task, entry in saved.get("tasks", {}).items():
                if task not in payload["tasks"]:
                    payload["tasks"][task] = {**entry, "carried_over_from": saved.get("env")}
        print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
