"""Training step time: energyflow's ``Trainer.train_step`` against torchebm's
``EnergyMatchingLoss`` on the same network, batch, chain length and step size.

Workload (DESIGN.md section 5): ``ToyDomain(dataset="moons", source="eight_gaussians")``,
its default network (MLP 2 -> 256 -> 256 -> 256 -> 1, SiLU), float32, CPU, batch 256,
Adam (betas 0.9, 0.95) with gradient clipping at 1.0.

- Phase 1: OT flow matching only (exact minibatch OT, one double backward).
- Phase 2: OT flow matching + contrastive divergence with M = 200 Euler-Maruyama
  Langevin steps (dt = 0.01) for the negatives, half started from data and half from
  the source.

Peers, all timed round-robin in one process (``_common.time_interleaved``):

- ``energyflow``: ``Trainer.train_step`` (toy preset, ``batch_size=256``).
- ``torchebm (auction OT)``: ``EnergyMatchingLoss`` with its default exact OT coupling
  (a torch-native auction solver), ``sigma=0`` (energyflow adds no smoothing noise),
  ``cd_trim_fraction=0``, ``cd_clamp=None`` (the toy preset's alpha = 0, no beta).
- ``torchebm (POT emd)``: the same loss with a coupling that solves the assignment with
  POT's ``ot.emd``, the solver energyflow uses, so only the training code differs.
- ``plain torch``: a hand-written loop doing the same arithmetic with no library around
  it (POT pairing, one forward over all CD inputs): the floor to compare against.

Each peer runs the same number of network evaluations per step; the script counts the
rows pushed through the network in one step of each and prints them. Time per step is
the median over repeats of (wall time of ``k`` consecutive steps) / ``k``.

The OT share: ``ot_seconds / seconds`` of energyflow's phase-1 ``train_step`` records
at batch 128 (the paper reports 1.5 %), median over steps.

Run:
    .venv/bin/python benchmarks/train_speed.py            # full
    .venv/bin/python benchmarks/train_speed.py --quick    # smoke run
    .venv/bin/python benchmarks/train_speed.py --profile  # also cProfile energyflow's steps
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import base_parser, env_info, markdown_table, set_threads, summary, time_interleaved, write_result
else:  # imported as benchmarks.train_speed
    from ._common import base_parser, env_info, markdown_table, set_threads, summary, time_interleaved, write_result

import numpy as np
import torch
from torch import nn

from energyflow.domains.toy import ToyDomain
from energyflow.training import Trainer, resolve_config
from energyflow.training.build import build_network

NAME = "train_speed"
TARGETS = {1: 3.0, 2: 1.5}  # energyflow must be this many times faster than torchebm


def ef_config(batch: int, phase: int, langevin_steps: int):
    """The toy preset at the benchmark's batch, pinned to one phase."""
    big = 10**9
    return resolve_config("toy", overrides=dict(
        batch_size=batch, num_langevin_steps=langevin_steps, device="cpu", seed=0,
        steps=big, phase1_steps=big if phase == 1 else 0,
    ))


class RowCounter:
    """Forward hook on a module counting calls and rows (batch entries) it processes."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.rows = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.calls += 1
        self.rows += int(inputs[0].shape[0])

    def remove(self) -> None:
        self.handle.remove()


# --- torchebm -------------------------------------------------------------------------------
def torchebm_peers(cfg, domain, phase: int):
    """Step functions for torchebm's EnergyMatchingLoss (default OT and POT OT); None if missing."""
    try:
        import torchebm
        from torchebm.core import BaseCostCoupling, BaseModel
        from torchebm.losses import EnergyMatchingLoss
    except ImportError as err:
        return None, f"torchebm not importable ({err}); pip install -c constraints.txt torchebm"

    class NetEnergy(BaseModel):
        """The domain's default network as a torchebm potential, forward (B, 2) -> (B,)."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(-1)

    class PotEmdCoupling(BaseCostCoupling):
        """Exact OT by POT's network simplex (what energyflow's ExactOT uses)."""

        def _solve(self, cost: torch.Tensor, generator=None) -> torch.Tensor:
            import ot

            c = cost.detach().double().cpu().numpy()
            n, m = c.shape
            plan = ot.emd(np.full(n, 1.0 / n), np.full(m, 1.0 / m), c, numItermax=1_000_000)
            return torch.from_numpy(plan.argmax(axis=1)).to(cost.device)

    peers = {}
    for label, coupling in (("torchebm (auction OT)", "ot"), ("torchebm (POT emd)", PotEmdCoupling())):
        net = build_network(domain, cfg)  # same seed, same initial weights as energyflow's
        model = NetEnergy(net).train()
        loss_fn = EnergyMatchingLoss(
            model=model, coupling=coupling, sigma=0.0, flow_weight_cutoff=cfg.tau_star,
            lambda_cd=cfg.lambda_cd if phase == 2 else 0.0, epsilon_max=cfg.eps_max,
            tau_star=cfg.tau_star, n_langevin_steps=cfg.num_langevin_steps, langevin_dt=cfg.step_size,
            noise_fraction=0.5, cd_trim_fraction=cfg.trim_alpha, cd_clamp=cfg.clamp_beta,
            dtype=torch.float32, device="cpu",
        )
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)
        gen = torch.Generator().manual_seed(cfg.seed + 1)

        def step(net=net, loss_fn=loss_fn, opt=opt, gen=gen) -> None:
            x1 = domain.sample_data(cfg.batch_size, generator=gen)
            x0 = domain.sample_source(cfg.batch_size, generator=gen)
            loss = loss_fn(x1, x0=x0, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()

        peers[label] = (step, net)
    return (torchebm.__version__, peers), None


# --- plain torch floor ----------------------------------------------------------------------
def plain_peer(cfg, domain, phase: int):
    """The same step written directly in torch + POT: no library around it."""
    import ot

    net = build_network(domain, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    b, dt, m, tau, eps_max = cfg.batch_size, cfg.step_size, cfg.num_langevin_steps, cfg.tau_star, cfg.eps_max
    w = np.full(b, 1.0 / b)

    def grad_v(x: torch.Tensor) -> torch.Tensor:
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xr).sum(), xr)
        return g

    def eps_at(t: float) -> float:
        return 0.0 if t < tau else eps_max * min(1.0, (t - tau) / (1.0 - tau))

    def langevin(x: torch.Tensor, t0: float) -> torch.Tensor:
        for k in range(m):
            eps = eps_at(t0 + k * dt)
            x = x - dt * grad_v(x)
            if eps > 0:
                x = x + (2 * eps * dt) ** 0.5 * torch.randn(x.shape, generator=gen)
        return x.detach()

    def step() -> None:
        x1 = domain.sample_data(b, generator=gen)
        x0 = domain.sample_source(b, generator=gen)
        plan = ot.emd(w, w, ot.dist(x0.double().numpy(), x1.double().numpy()))
        x1 = x1[torch.from_numpy(plan.argmax(axis=1))]
        t = torch.rand(b, generator=gen)
        xt = ((1 - t[:, None]) * x0 + t[:, None] * x1).requires_grad_(True)
        parts = [xt]
        if phase == 2:
            xd = domain.sample_data(b, generator=gen)
            h = b // 2
            neg = torch.cat([langevin(xd[:h], 1.0), langevin(domain.sample_source(b - h, generator=gen), 0.0)])
            parts += [xd, neg]
        e = net(torch.cat(parts)).squeeze(-1)
        (g,) = torch.autograd.grad(e[:b].sum(), xt, create_graph=True)
        wt = torch.where(t < tau, torch.ones_like(t), ((1 - t) / (1 - tau)).clamp_min(0))
        loss = (wt * ((-g - (x1 - x0)) ** 2).mean(-1)).mean()
        if phase == 2:
            loss = loss + cfg.lambda_cd * (e[b:2 * b].mean() - e[2 * b:].mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()

    return step, net


# --- measurement ----------------------------------------------------------------------------
def count_rows(step, net: nn.Module) -> tuple[int, int]:
    counter = RowCounter(net)
    try:
        step()
    finally:
        counter.remove()
    return counter.calls, counter.rows


def cprofile_table(fn, n: int, limit: int = 18) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls"):] if "   ncalls" in text else text


def ot_share(batch: int, steps: int, warmup: int, run_dir: str) -> dict:
    """Median OT share of energyflow phase-1 train_step records at ``batch``."""
    trainer = Trainer(ef_config(batch, 1, 200), run_dir)
    for _ in range(warmup):
        trainer.train_step()
    recs = [trainer.train_step() for _ in range(steps)]
    shares = [r["ot_seconds"] / r["seconds"] for r in recs]
    return {
        "batch": batch, "steps": steps,
        "share_median": statistics.median(shares),
        "share_of_medians": statistics.median(r["ot_seconds"] for r in recs) / statistics.median(r["seconds"] for r in recs),
        "ot_ms_median": statistics.median(r["ot_seconds"] for r in recs) * 1e3,
        "step_ms_median": statistics.median(r["seconds"] for r in recs) * 1e3,
        "share_iqr": summary(shares)["iqr"],
    }


def bench_phase(phase: int, args, domain, run_dir: str) -> dict:
    cfg = ef_config(args.batch, phase, args.langevin_steps)
    trainer = Trainer(cfg, run_dir)
    records: list[dict] = []

    def ef_step() -> None:
        records.append(trainer.train_step())

    steps_fns = {"energyflow": (ef_step, trainer.net)}
    peer, skip = torchebm_peers(cfg, domain, phase)
    version = None
    if peer is not None:
        version, peers = peer
        steps_fns.update(peers)
    steps_fns["plain torch"] = plain_peer(cfg, domain, phase)

    work = {name: count_rows(fn, net) for name, (fn, net) in steps_fns.items()}
    records.clear()

    # steps per timed call: phase-1 steps are milliseconds, so several are timed together;
    # the auction solver takes ~0.1-0.5 s a call, so it gets fewer.
    if phase == 1:
        k = {name: (1 if "auction" in name else args.phase1_batch_steps) for name in steps_fns}
    else:
        k = {name: 1 for name in steps_fns}

    def batched(name):
        fn = steps_fns[name][0]

        def run() -> None:
            for _ in range(k[name]):
                fn()
        return run

    repeats = args.repeats or (3 if args.quick else (15 if phase == 1 else 9))
    warmup = args.warmup if args.warmup is not None else 1
    times = time_interleaved({name: batched(name) for name in steps_fns}, repeats=repeats, warmup=warmup)
    per_step = {name: [t / k[name] for t in ts] for name, ts in times.items()}
    stats = {name: summary(ts) for name, ts in per_step.items()}
    ef_med = stats["energyflow"]["median"]

    def paired(name: str) -> float:
        return statistics.median(b / a for a, b in zip(per_step["energyflow"], per_step[name]))

    rows = []
    for name in steps_fns:
        calls, nrows = work[name]
        ratio = stats[name]["median"] / ef_med
        rows.append([name, calls, nrows, stats[name]["median"] * 1e3, stats[name]["iqr"] * 1e3,
                     ratio, paired(name)])
    ot_rec = [r["ot_seconds"] / r["seconds"] for r in records]
    return {
        "phase": phase, "config": {"batch": cfg.batch_size, "langevin_steps": cfg.num_langevin_steps,
                                   "step_size": cfg.step_size, "lambda_cd": cfg.lambda_cd if phase == 2 else 0.0,
                                   "steps_per_timed_call": k},
        "repeats": repeats, "warmup": warmup, "torchebm_version": version, "torchebm_skipped": skip,
        "work": {n: {"forward_calls": c, "rows": r} for n, (c, r) in work.items()},
        "ms_per_step": {n: s for n, s in stats.items()},
        "ratio_vs_energyflow": {n: stats[n]["median"] / ef_med for n in steps_fns},
        "paired_ratio_vs_energyflow": {n: paired(n) for n in steps_fns},
        "ef_ot_share_median": statistics.median(ot_rec) if ot_rec else None,
        "rows": rows, "cfg": cfg, "trainer": trainer,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="batch size of the step-time comparison (256)")
    parser.add_argument("--langevin-steps", type=int, default=None, help="chain length M in phase 2 (200; quick 20)")
    parser.add_argument("--phase1-batch-steps", type=int, default=None,
                        help="phase-1 steps per timed call (20; quick 5)")
    parser.add_argument("--ot-batch", type=int, default=128, help="batch of the OT-share measurement (128)")
    parser.add_argument("--ot-steps", type=int, default=None, help="phase-1 steps for the OT share (300; quick 30)")
    parser.add_argument("--profile", action="store_true", help="cProfile energyflow's phase-1 and phase-2 steps")
    args = parser.parse_args(argv)
    args.langevin_steps = args.langevin_steps or (20 if args.quick else 200)
    args.phase1_batch_steps = args.phase1_batch_steps or (5 if args.quick else 20)
    ot_steps = args.ot_steps or (30 if args.quick else 300)
    set_threads(args.threads)
    domain = ToyDomain(dataset="moons", source="eight_gaussians")

    with tempfile.TemporaryDirectory() as run_dir:
        phases = {p: bench_phase(p, args, domain, run_dir) for p in (1, 2)}
        share = ot_share(args.ot_batch, ot_steps, warmup=10, run_dir=run_dir)
        profiles = {}
        if args.profile:
            for p, res in phases.items():
                n = 50 if p == 1 else 3
                profiles[p] = cprofile_table(res["trainer"].train_step, n)

    version = phases[1]["torchebm_version"]
    print(f"## Training step time (toy moons <- 8 Gaussians, MLP 2-256-256-256-1 SiLU, B={args.batch}, "
          f"float32, {torch.get_num_threads()} threads, torch {torch.__version__}, torchebm {version})\n")
    for p, res in phases.items():
        c = res["config"]
        what = "OT flow matching only" if p == 1 else f"OT + CD, M={c['langevin_steps']} Langevin steps, dt={c['step_size']}"
        print(f"### Phase {p}: {what}\n")
        print(f"median of {res['repeats']} repeats after {res['warmup']} warm-up, peers interleaved; "
              f"ratio = peer ms / energyflow ms (> 1: energyflow faster); paired = median of per-repeat ratios\n")
        print(markdown_table(
            ["implementation", "net forwards / step", "rows / step", "ms / step", "IQR ms", "ratio vs energyflow", "paired ratio"],
            res["rows"],
        ))
        if res["torchebm_skipped"]:
            print(f"\n(torchebm skipped: {res['torchebm_skipped']})")
        print()

    verdicts = []
    if version is not None:
        print("### Targets (energyflow faster than torchebm by)\n")
        trow = []
        for p, res in phases.items():
            for peer_name in ("torchebm (auction OT)", "torchebm (POT emd)"):
                r = res["ratio_vs_energyflow"][peer_name]
                ok = r >= TARGETS[p]
                trow.append([f"phase {p}", peer_name, r, f">= {TARGETS[p]}", "yes" if ok else "NO"])
                verdicts.append({"phase": p, "peer": peer_name, "speedup": r, "target": TARGETS[p], "met": ok})
        print(markdown_table(["phase", "vs", "speed-up", "target", "met"], trow))
        print()

    print(f"### OT solve share of an energyflow phase-1 step (batch {share['batch']}, {share['steps']} steps)\n")
    print(markdown_table(
        ["batch", "median OT ms", "median step ms", "median share", "share of medians", "paper"],
        [[share["batch"], share["ot_ms_median"], share["step_ms_median"],
          f"{100 * share['share_median']:.1f} %", f"{100 * share['share_of_medians']:.1f} %", "1.5 %"]],
    ))
    b1 = phases[1]["ef_ot_share_median"]
    if b1 is not None:
        print(f"\n(at batch {args.batch}, from the timed phase-1 steps above: median share {100 * b1:.1f} %)")

    for p, text in profiles.items():
        print(f"\n### cProfile: energyflow phase-{p} train_step (sorted by own time)\n")
        print("```\n" + text.rstrip() + "\n```")

    payload = {
        "name": NAME, "quick": args.quick, "batch": args.batch, "threads": args.threads,
        "phases": {p: {k: v for k, v in res.items() if k not in ("cfg", "trainer", "rows")} for p, res in phases.items()},
        "targets": verdicts, "ot_share": share, "profiles": profiles,
        "config": phases[2]["cfg"].to_dict(), "env": env_info(torch.get_num_threads()),
    }
    if not args.no_json:
        path = write_result(NAME, payload)
        print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
