"""The trainer: exact resume, divergence handling, metrics, plots and EMA."""

from __future__ import annotations

import json
import math

import pytest
import torch

from energyflow.training import CheckpointError, Trainer, TrainingDiverged, load_checkpoint, read_metrics, resolve_config
from energyflow.training.run import load_potential

TINY = dict(
    steps=8, batch_size=16, hidden=16, depth=2, num_langevin_steps=5, lr=1e-2, lr_warmup_steps=4,
    log_every=1, eval_every=1000, checkpoint_every=1000, eval_samples=32, sample_t_end=0.1,
    device="cpu", seed=3,
)


def tiny(**kw):
    return resolve_config("toy", overrides={**TINY, **kw})


@pytest.fixture
def no_plots(monkeypatch):
    """Plots cost ~1 s each run; tests that do not look at them skip them."""
    monkeypatch.setattr(Trainer, "plot", lambda self: [])


class Interrupt(Exception):
    pass


def stop_at(step):
    def callback(record):
        if record.get("kind") == "train" and record["step"] == step:
            raise Interrupt

    return callback


def snapshot(tr: Trainer) -> dict:
    return {
        "step": tr.step,
        "model": {k: v.clone() for k, v in tr.net.state_dict().items()},
        "ema": {k: v.clone() for k, v in tr.ema.state_dict().items()} if tr.ema is not None else None,
        "optimizer": tr.optimizer.state_dict(),
        "scheduler_epoch": tr.scheduler.last_epoch,
        "lr": tr.optimizer.param_groups[0]["lr"],
        "rng": (tr.data_gen.get_state(), tr.noise_gen.get_state()),
        "ema_decay": tr._ema_decay,
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        if a[key] is None:
            assert b[key] is None
            continue
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    for i in oa["state"]:
        for k, v in oa["state"][i].items():
            assert torch.equal(v, ob["state"][i][k]), f"optimizer state {i}.{k}"
    assert a["scheduler_epoch"] == b["scheduler_epoch"] and a["lr"] == b["lr"]
    assert torch.equal(a["rng"][0], b["rng"][0]) and torch.equal(a["rng"][1], b["rng"][1])
    assert a["ema_decay"] == b["ema_decay"]


def train_records(run_dir):
    return [{k: v for k, v in r.items() if k not in ("seconds", "ot_seconds")}
            for r in read_metrics(run_dir) if r["kind"] == "train"]


# phase1_steps = 3, N = 8: interrupting at 5 resumes inside phase 2 (CD and Langevin RNG
# in use on both sides of the cut); phase1_steps = 5, interrupt at 3 resumes in phase 1
# and crosses into phase 2 after the resume. Checkpoints every 2 steps and the crash at a
# non-checkpoint step, so the resumed run restarts from an older checkpoint and must
# truncate the metrics it had logged past it.
@pytest.mark.parametrize("phase1, crash_at", [(3, 5), (5, 3)])
def test_resume_after_interruption_is_bitwise_identical(tmp_path, no_plots, phase1, crash_at):
    cfg = tiny(phase1_steps=phase1, checkpoint_every=2, ema_decay=0.9, ema_decay_phase2=0.5)

    straight = Trainer(cfg, tmp_path / "a")
    straight.fit()
    ref = snapshot(straight)
    assert ref["step"] == 8 and ref["ema_decay"] == 0.5

    first = Trainer(cfg, tmp_path / "b")
    with pytest.raises(Interrupt):
        first.fit(callback=stop_at(crash_at))
    assert load_checkpoint(tmp_path / "b")["step"] == crash_at - 1
    resumed = Trainer(cfg, tmp_path / "b", resume=True)
    assert resumed.step == crash_at - 1
    resumed.fit()
    assert_same(ref, snapshot(resumed))
    # The logs match too: nothing from the lost step is duplicated.
    assert train_records(tmp_path / "a") == train_records(tmp_path / "b")
    phases = [r["phase"] for r in train_records(tmp_path / "b")]
    assert phases == [1] * phase1 + [2] * (8 - phase1)
    # The checkpoint on disk is the final state.
    on_disk = load_checkpoint(tmp_path / "b")
    for name, value in ref["model"].items():
        assert torch.equal(on_disk["model"][name], value)


def test_split_with_max_steps_equals_straight_run(tmp_path, no_plots):
    cfg = tiny(phase1_steps=2, lr_warmup_steps=6)  # LR warm-up still running at the split
    straight = Trainer(cfg, tmp_path / "a")
    straight.fit()
    part = Trainer(cfg, tmp_path / "b")
    assert part.fit(max_steps=4).step == 4
    assert load_checkpoint(tmp_path / "b")["step"] == 4
    resumed = Trainer(cfg, tmp_path / "b", resume=True)
    assert resumed.optimizer.param_groups[0]["lr"] == part.optimizer.param_groups[0]["lr"]
    assert resumed.fit().step == 8
    assert_same(snapshot(straight), snapshot(resumed))


def test_training_changes_the_weights_and_records_both_phases(tmp_path, no_plots):
    cfg = tiny(phase1_steps=4, eval_every=4)
    tr = Trainer(cfg, tmp_path)
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    seen = []
    result = tr.fit(callback=seen.append)
    assert result.step == 8 and result.checkpoint == tmp_path / "checkpoints" / "last.pt"
    assert any(not torch.equal(before[k], v) for k, v in tr.net.state_dict().items())
    records = read_metrics(tmp_path)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["step"] for r in evals] == [4, 8]
    assert all(math.isfinite(r["w2"]) and r["mmd"] is not None for r in evals)
    assert set(result.eval_metrics) == {"w2", "mmd"} and result.eval_metrics["w2"] == evals[-1]["w2"]
    # Phase 1 has no CD (logged as null), phase 2 does.
    assert all(r["phase"] == 1 and r["cd"] is None for r in train[:4])
    assert all(r["phase"] == 2 and math.isfinite(r["cd"]) and math.isfinite(r["energy_negative"]) for r in train[4:])
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in train)
    # The callback saw every record, including evals, in order.
    assert [r["kind"] for r in seen].count("eval") == 2 and len(seen) == 10
    # Every line is valid JSON (no NaN literals).
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert resolve_config(file=tmp_path / "config.toml") == cfg


def test_plots_are_written_for_the_toy_domain(tmp_path):
    result = Trainer(tiny(steps=3), tmp_path).fit()
    names = sorted(p.name for p in result.plots)
    assert names == ["landscape.png", "loss.png", "samples.png", "trajectories.png"]
    for p in result.plots:
        assert p.parent == tmp_path / "plots" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nan_data_raises_training_diverged_and_keeps_the_last_good_checkpoint(tmp_path, no_plots):
    cfg = tiny(phase1_steps=8, checkpoint_every=2, coupling="independent")
    tr = Trainer(cfg, tmp_path)
    real = tr.domain.sample_data
    calls = []

    def poisoned(n, generator=None, device=None):
        calls.append(n)
        x = real(n, generator=generator, device=device)
        return torch.full_like(x, float("nan")) if len(calls) == 6 else x  # the 6th step (step index 5)

    tr.domain.sample_data = poisoned
    with pytest.raises(TrainingDiverged) as info:
        tr.fit()
    msg = str(info.value)
    assert "at step 5" in msg and str(tmp_path / "checkpoints" / "last.pt") in msg and "--resume" in msg
    state = load_checkpoint(tmp_path)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # ... and training resumes from it.
    assert Trainer(cfg, tmp_path, resume=True).step == 4


def test_divergence_before_any_checkpoint_says_so(tmp_path, no_plots):
    cfg = tiny(coupling="independent")
    tr = Trainer(cfg, tmp_path)
    tr.domain.sample_data = lambda n, generator=None, device=None: torch.full((n, 2), float("inf"))
    with pytest.raises(TrainingDiverged, match="at step 0.*no checkpoint"):
        tr.fit()


def test_huge_learning_rate_diverges_cleanly(tmp_path, no_plots):
    # Adam moves every weight by about lr per step, so lr = 1e30 overflows float32
    # activations within a couple of steps; the trainer must stop with TrainingDiverged
    # rather than write NaN weights.
    cfg = tiny(lr=1e30, lr_warmup_steps=0, grad_clip="none", checkpoint_every=1, phase1_steps=8)
    with pytest.raises(TrainingDiverged):
        Trainer(cfg, tmp_path).fit()
    state = load_checkpoint(tmp_path)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_ema_follows_its_recursion_and_changes_sampling(tmp_path, no_plots):
    cfg = tiny(phase1_steps=3, steps=6, ema_decay=0.8, ema_decay_phase2=0.6)
    tr = Trainer(cfg, tmp_path)
    live = []

    def record(r):
        if r["kind"] == "train":
            live.append({k: v.detach().clone() for k, v in tr.net.state_dict().items()})

    tr.fit(callback=record)
    # AveragedModel copies the weights at its first update, then averages with the
    # decay of the phase the step ran in: steps 1-3 use 0.8, steps 4-6 use 0.6.
    expected = dict(live[0])
    for step, weights in enumerate(live[1:], start=2):
        d = 0.8 if step <= 3 else 0.6
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in weights}
    ema = tr.sampling_potential()
    assert ema is not tr.potential
    got = {k[len("net."):]: v for k, v in ema.state_dict().items() if k.startswith("net.")}
    for k in expected:
        # float32 recursions evaluated in a different order: a few ulps.
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(got[k], live[-1][k])
    # Sampling uses the EMA weights: different energies from the live network.
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(ema(x), tr.potential(x))
    # load_potential picks the EMA by default and the live weights on request.
    pot_ema, _, _ = load_potential(tmp_path)
    pot_live, _, _ = load_potential(tmp_path, use_ema=False)
    with torch.no_grad():
        torch.testing.assert_close(pot_ema(x), ema(x), rtol=0, atol=0)
        torch.testing.assert_close(pot_live(x), tr.potential(x), rtol=0, atol=0)


def test_without_ema_sampling_uses_the_live_weights(tmp_path, no_plots):
    tr = Trainer(tiny(steps=2), tmp_path)
    tr.fit()
    assert tr.ema is None and tr.sampling_potential() is tr.potential


def test_resume_with_a_different_network_is_refused(tmp_path, no_plots):
    Trainer(tiny(steps=2), tmp_path).fit()
    with pytest.raises(CheckpointError, match="does not match"):
        Trainer(tiny(steps=4, hidden=32), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="no EMA"):
        Trainer(tiny(steps=4, ema_decay=0.9), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(tiny(), tmp_path / "nothing", resume=True)


def test_same_seed_same_run_different_seed_different_run(tmp_path, no_plots):
    a = Trainer(tiny(steps=3, phase1_steps=1), tmp_path / "a")
    a.fit()
    b = Trainer(tiny(steps=3, phase1_steps=1), tmp_path / "b")
    b.fit()
    c = Trainer(tiny(steps=3, phase1_steps=1, seed=4), tmp_path / "c")
    c.fit()
    sa, sb, sc = (t.net.state_dict() for t in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_non_finite_gradient_stops_before_the_weights_change(tmp_path, no_plots):
    # A hook turns every parameter gradient into NaN while the loss itself stays finite:
    # the trainer must refuse to step, leaving the weights exactly as they were.
    tr = Trainer(tiny(), tmp_path / "run")
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    for p in tr.net.parameters():
        p.register_hook(lambda g: g * float("nan"))
    with pytest.raises(TrainingDiverged, match="gradient became nan at step 0"):
        tr.train_step()
    for k, v in tr.net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_phase1_flow_loss_is_unweighted_and_phase2_uses_the_ramp(tmp_path, no_plots, monkeypatch):
    """Algorithm 1 trains ||-grad V - (x1 - x0)||^2 with w = 1; w(t) over [tau*, 1] is phase 2's."""
    import energyflow.training.trainer as trainer_module

    seen = []
    real = trainer_module.energy_matching_loss

    def spy(*args, **kwargs):
        seen.append(kwargs["tau_star"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "energy_matching_loss", spy)
    cfg = tiny(steps=4, phase1_steps=2, tau_star=0.8)
    Trainer(cfg, tmp_path / "run").fit()
    assert seen == [1.0, 1.0, 0.8, 0.8]


# --- the domain protocol as the trainer uses it -----------------------------------------------
def test_evaluate_measures_against_the_domains_held_out_data(tmp_path, no_plots, monkeypatch):
    trainer = Trainer(tiny(steps=2, eval_samples=200), tmp_path)
    domain = trainer.domain
    seen = []
    real = type(domain).metrics

    def spy(self, samples, reference=None):
        seen.append(reference)
        return real(self, samples, reference)

    monkeypatch.setattr(type(domain), "metrics", spy)
    metrics = trainer.evaluate()
    assert seen == [None]  # the domain picks its own reference
    samples = trainer.sample(200).samples.cpu()  # the evaluation's seed: the same samples again
    assert metrics == real(domain, samples, domain.test_data())
    # ... not fresh training draws, which the trainer used to pass
    fresh = domain.sample_data(200, generator=torch.Generator().manual_seed(trainer.cfg.seed + 999_983))
    assert metrics != real(domain, samples, fresh)


def test_source_batches_are_shaped_like_the_data_they_pair_with(tmp_path, no_plots, monkeypatch):
    trainer = Trainer(tiny(steps=2, phase1_steps=1), tmp_path)  # one phase-1 and one phase-2 step
    likes = []
    real = type(trainer.domain).sample_source

    def spy(self, n=None, generator=None, device=None, like=None):
        out = real(self, n, generator, device, like)
        likes.append(None if like is None else (tuple(like.shape), like.device, out.shape == like.shape))
        return out

    monkeypatch.setattr(type(trainer.domain), "sample_source", spy)
    trainer.train_step()
    assert likes == [((16, 2), torch.device("cpu"), True)]  # phase 1: x0 for the coupling with x1
    likes.clear()
    trainer.train_step()
    # phase 2: the coupling's x0, then the CD negatives' source half (8 of 16) beside the data half
    assert likes == [((16, 2), torch.device("cpu"), True), ((8, 2), torch.device("cpu"), True)]


def test_two_training_steps_on_pytree_graph_states(tmp_path, no_plots):
    """A domain whose states are dicts (node features, adjacency, node mask): the coupling
    pairs equal masks, negatives keep them, the loss and the optimiser run, and the
    evaluation samples keep the structure."""
    from graph_helpers import TinyGraph

    from energyflow.registry import register_domain, unregister_domain

    register_domain("tinygraph", TinyGraph, default_preset="toy")
    try:
        from energyflow.training.config import TrainConfig

        cfg = TrainConfig(**{**TINY, "domain": "tinygraph", "steps": 2, "phase1_steps": 1, "num_langevin_steps": 3,
                             "eval_every": 2, "eval_samples": 8, "batch_size": 16})
        trainer = Trainer(cfg, tmp_path / "run")
        before = [p.detach().clone() for p in trainer.net.parameters()]
        records = [trainer.train_step(), trainer.train_step()]
        assert [r["phase"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
        assert math.isfinite(records[1]["cd"])
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))
        neg = trainer.negatives(trainer.domain.sample_data(6, generator=torch.Generator().manual_seed(0)))
        assert set(neg) == {"x", "adj", "mask"} and torch.equal(neg["adj"], neg["adj"].transpose(1, 2))
        out = trainer.sample(5)
        assert out.samples["mask"].dtype == torch.bool and out.samples["adj"].shape == (5, 4, 4)
        assert "edge_density_gap" in trainer.evaluate()
    finally:
        unregister_domain("tinygraph")


def test_cosine_schedule_logs_the_documented_learning_rates_and_resumes_on_them(tmp_path, no_plots):
    from energyflow.training.trainer import lr_factor

    cfg = tiny(lr_schedule="cosine", phase1_steps=8, checkpoint_every=1)
    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        Trainer(cfg, run).fit(callback=stop_at(3))
    Trainer(cfg, run, resume=True).fit()
    lrs = {r["step"]: r["lr"] for r in read_metrics(run) if r.get("kind") == "train"}
    # the record of step k is written after k optimiser steps: the scheduler then stands at step k
    expected = {k: cfg.lr * lr_factor(k, warmup=4, steps=8, schedule="cosine") for k in lrs}
    assert lrs == pytest.approx(expected, rel=1e-12) and lrs[8] < lrs[4] < cfg.lr
    with pytest.raises(Exception, match="lr_schedule"):
        tiny(lr_schedule="linear")
