"""How many AIS levels does log Z need? The error of ``log_partition`` against a reference.

For a trained run (``--run DIR``), estimates log Z of exp(-V / eps_max) by AIS with
0 (plain importance sampling), 1, 3, 10, 30, 100 and 200 levels, and compares with a
reference: 2-D quadrature on a 1201 x 1201 grid over [-6, 6]^2 for 2-D domains, else
the mean of two AIS runs with ``--reference-levels`` (800) levels. Prints the error in
nats and the effective sample size, the numbers behind ``energyflow evaluate``'s
``--ais-steps`` floor and its low-ESS warning.

Run (after ``make demo``, and after training a digits run):
    .venv/bin/python benchmarks/ais_levels.py --run runs/demo --threads 1
    .venv/bin/energyflow train --preset mnist --out runs/digits-ais --steps 600 --lr 1e-3 \\
        --set phase1_steps=500 --set num_langevin_steps=30 --set ema_decay=0.99
    .venv/bin/python benchmarks/ais_levels.py --run runs/digits-ais --chains 256 --threads 1
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import base_parser, markdown_table, set_threads
else:
    from ._common import base_parser, markdown_table, set_threads

import torch

from energyflow.likelihood import log_partition
from energyflow.training.run import load_potential

LEVELS = [0, 1, 3, 10, 30, 100, 200]


def quadrature_log_z(potential, temperature: float, lim: float = 6.0, m: int = 1201) -> float:
    g = torch.linspace(-lim, lim, m, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).float()
    with torch.no_grad():
        e = torch.cat([potential(c) for c in pts.split(65536)]).double()
    return float(torch.logsumexp(-e / temperature, 0) + 2 * math.log(2 * lim / (m - 1)))


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory or checkpoint")
    parser.add_argument("--chains", type=int, default=512, help="AIS chains per estimate (512)")
    parser.add_argument("--reference-levels", type=int, default=800, help="levels of the reference AIS runs (800)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    potential, cfg, domain = load_potential(args.run)
    event = tuple(domain.space.event_shape)
    temperature = cfg.eps_max

    def estimate(levels: int, seed: int):
        return log_partition(potential, dim=event, temperature=temperature, num_chains=args.chains, num_steps=levels,
                             generator=torch.Generator().manual_seed(seed + 1))

    if event == (2,):
        reference, how = quadrature_log_z(potential, temperature), "2-D quadrature"
    else:
        runs = [estimate(args.reference_levels, s).log_z for s in range(2)]
        reference = sum(runs) / 2
        how = f"{args.reference_levels} AIS levels (two runs: {runs[0]:.2f}, {runs[1]:.2f})"
    rows = []
    for levels in LEVELS:
        est = estimate(levels, 7)
        rows.append([levels, f"{est.log_z:.3f}", f"{est.log_z - reference:+.3f}", f"{est.ess:.1f}"])
    print(f"## AIS log Z of {args.run} ({cfg.domain}/{cfg.dataset}, T = eps_max = {temperature:g}, "
          f"{args.chains} chains); reference {reference:.3f} by {how}\n")
    print(markdown_table(["levels", "log Z", "error (nats)", f"ESS of {args.chains}"], rows))
    return {"reference": reference, "rows": rows}


if __name__ == "__main__":
    main()
