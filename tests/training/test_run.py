"""The run-directory API: load_potential, read_metrics, plot_run, sampler_for; options survive a run."""

from __future__ import annotations

import pytest
import torch

from energyflow.training import Trainer, load_checkpoint, resolve_config
from energyflow.training.checkpoint import save_checkpoint
from energyflow.training.config import load_config_file
from energyflow.training.run import load_potential, plot_run, read_metrics, sampler_for

TINY = dict(steps=2, phase1_steps=2, batch_size=8, hidden=8, depth=1, num_langevin_steps=3, log_every=1,
            eval_every=1000, checkpoint_every=1000, eval_samples=8, sample_t_end=0.05, device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = resolve_config("toy", overrides={**TINY, "domain_options": {"dataset": "rings", "test_size": 64},
                                           "network_options": {"hidden": 12}})
    trainer = Trainer(cfg, out)
    trainer.plot = list  # plots are tested below on their own (list() == [])
    trainer.fit()
    return out, cfg


def test_options_round_trip_through_the_checkpoint_and_config_toml(run):
    out, cfg = run
    state = load_checkpoint(out)
    assert state["config"]["domain_options"] == {"test_size": 64} and state["config"]["network_options"] == {"hidden": 12}
    assert state["config"]["dataset"] == "rings"  # domain_options.dataset moved to the field
    assert load_config_file(out / "config.toml")["domain_options"] == {"test_size": 64}
    assert resolve_config(file=out / "config.toml") == cfg
    potential, loaded, domain = load_potential(out)
    assert loaded == cfg and domain.test_size == 64 and domain.dataset == "rings"
    assert potential.net[0].out_features == 12  # network_options won over hidden=8


def test_a_checkpoint_from_before_the_option_tables_still_loads(run, tmp_path):
    out, _ = run
    state = load_checkpoint(out)
    old = {k: v for k, v in state["config"].items() if k not in ("domain_options", "network_options")}
    old["hidden"] = 12  # the network the weights were trained with, as an old config said it
    save_checkpoint({**{k: v for k, v in state.items() if k != "format"}, "config": old}, tmp_path / "old.pt")
    potential, loaded, domain = load_potential(tmp_path / "old.pt")
    assert loaded.domain_options == {} and loaded.network_options == {} and domain.test_size == 2000
    x = torch.randn(5, 2)
    reference, _, _ = load_potential(out)
    assert torch.equal(potential(x), reference(x))


def test_read_metrics_skips_cut_lines(run, tmp_path):
    out, _ = run
    assert [r["step"] for r in read_metrics(out) if r["kind"] == "train"] == [1, 2]
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "tr')
    assert read_metrics(tmp_path) == [{"kind": "train", "step": 1}]
    assert read_metrics(tmp_path / "nothing") == []


def test_plot_run_skips_a_domain_without_a_plot(run, tmp_path):
    import types

    import matplotlib

    from energyflow.domains.base import Domain
    from energyflow.spaces import Euclidean

    matplotlib.use("Agg")
    out, _ = run
    potential, cfg, domain = load_potential(out)
    domain.space = Euclidean((2, 1))  # not 2-D: plot_run asks the domain for its own plot
    domain.plot = types.MethodType(Domain.plot, domain)  # the protocol's default: no plot
    calls = []

    def sample_fn(n, record_every=None):
        calls.append(n)
        return types.SimpleNamespace(samples=torch.zeros(n, 2, 1))

    (tmp_path / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text())
    written = plot_run(tmp_path, potential, domain, cfg, sample_fn)
    assert [p.name for p in written] == ["loss.png"] and calls == [64]
    assert not (tmp_path / "plots" / "samples.png").exists()


def test_sampler_for_follows_the_config(run):
    _, cfg = run
    s = sampler_for(cfg)
    assert (s.step_size, s.t_end, s.t_start, s.method) == (cfg.step_size, cfg.sample_t_end, 0.0, cfg.sample_method)
    chain = sampler_for(cfg, t_start=1.0, t_end=1.5, method="euler")
    assert (chain.t_start, chain.t_end, chain.method, chain.steps) == (1.0, 1.5, "euler", 50)
