"""The command line: train, resume, sample, evaluate, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, assert_user_error, invoke, train_tiny  # tests/ is on sys.path (no __init__.py)

from energyflow.training import load_checkpoint, read_metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("cli") / "run")


def test_train_writes_a_run(run):
    assert load_checkpoint(run)["step"] == 4
    assert (run / "config.toml").is_file() and (run / "plots" / "landscape.png").is_file()
    kinds = [r["kind"] for r in read_metrics(run)]
    assert kinds.count("train") == 4 and kinds.count("eval") == 1


def test_train_prints_metrics_and_run_dir(tmp_path):
    result = invoke("train", "--out", tmp_path / "r", *TINY, "--set", "coupling=independent")
    assert result.exit_code == 0, result.output
    assert "w2" in result.stdout and "mmd" in result.stdout
    # Paths are printed whole (no hard wrap), so they can be copied from piped output.
    assert f"run directory: {tmp_path / 'r'}" in result.stdout
    assert f"plot: {tmp_path / 'r' / 'plots' / 'trajectories.png'}" in result.stdout
    assert load_checkpoint(tmp_path / "r")["config"]["coupling"] == "independent"


def test_valence_guidance_is_refused_outside_the_molecule_domain(run, tmp_path):
    result = invoke("sample", run, "--n", "5", "--out", tmp_path / "v.pt", "--valence", "1")
    assert result.exit_code == 2 and "molecule runs" in result.output


def test_sample_writes_a_safe_tensor_and_a_plot(run, tmp_path):
    out = tmp_path / "s" / "samples.pt"
    result = invoke("sample", run, "--n", "50", "--out", out, "--seed", "1")
    assert result.exit_code == 0, result.output
    x = torch.load(out, weights_only=True)
    assert x.shape == (50, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # Same seed, same samples; the deterministic flow sampler gives different ones.
    again = tmp_path / "again.pt"
    invoke("sample", run, "--n", "50", "--out", again, "--seed", "1", "--no-plot")
    assert torch.equal(torch.load(again, weights_only=True), x) and not again.with_suffix(".png").exists()
    flow = tmp_path / "flow.pt"
    assert invoke("sample", run, "--n", "50", "--out", flow, "--sampler", "flow", "--no-plot").exit_code == 0
    assert not torch.equal(torch.load(flow, weights_only=True), x)
    # MALA refines the Energy Matching samples at eps_max with an adapted step size.
    mala = tmp_path / "mala.pt"
    assert invoke("sample", run, "--n", "50", "--out", mala, "--sampler", "mala", "--no-plot").exit_code == 0
    assert torch.isfinite(torch.load(mala, weights_only=True)).all()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_evaluate_prints_and_writes_json(run, tmp_path):
    js = tmp_path / "m" / "metrics.json"
    result = invoke("evaluate", run, "--n", "64", "--json", js)
    assert result.exit_code == 0, result.output
    metrics = json.loads(js.read_text())
    assert set(metrics) == {"w2", "mmd", "grad_evals_per_sample"}
    assert all(isinstance(v, float) for v in metrics.values()) and metrics["w2"] > 0
    for name in metrics:
        assert name in result.stdout
    assert f"{metrics['w2']:.5g}" in result.stdout


def test_evaluate_nll_and_lid(run, tmp_path):
    js = tmp_path / "m.json"
    result = invoke("evaluate", run, "--n", "64", "--nll", "--ais-chains", "64", "--ais-steps", "20", "--lid", "8",
                    "--json", js)
    assert result.exit_code == 0, result.output
    m = json.loads(js.read_text())
    assert {"nll", "nll_stderr", "nll_per_dim", "log_z", "log_z_stderr", "ais_ess", "lid_mean", "lid_median"} <= set(m)
    assert m["nll_stderr"] > 0 and m["nll_per_dim"] == pytest.approx(m["nll"] / 2)
    assert 0 <= m["lid_min"] <= m["lid_mean"] <= m["lid_max"] <= 2 and m["lid_points"] == 8
    # The NLL is of the Boltzmann density at eps_max on the held-out data (for the toy
    # domain its fixed-seed held-out draw of test_size points): mean V / eps_max + log Z.
    from energyflow.training.run import load_potential

    potential, cfg, domain = load_potential(run)
    data = domain.test_data()
    assert m["nll_points"] == data.shape[0] == 2000
    with torch.no_grad():
        expected = float(potential(data).double().mean()) / cfg.eps_max + m["log_z"]
    assert m["nll"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert_user_error(invoke("evaluate", run, "--n", "8", "--lid", "-1"), "--lid")


def test_resume_continues_from_the_checkpoint(tmp_path):
    out = tmp_path / "r"
    assert invoke("train", "--out", out, *TINY).exit_code == 0
    first = load_checkpoint(out)
    result = invoke("train", "--resume", out, "--steps", "6")
    assert result.exit_code == 0, result.output
    assert "at step 4/6" in result.stdout
    state = load_checkpoint(out)
    assert state["step"] == 6 and state["config"]["steps"] == 6
    assert state["config"]["hidden"] == 16  # the run's own config, not the preset's
    assert not torch.equal(state["model"]["0.weight"], first["model"]["0.weight"])
    steps = [r["step"] for r in read_metrics(out) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_missing_run_dir(tmp_path):
    for cmd in ("sample", "evaluate"):
        assert_user_error(invoke(cmd, tmp_path / "nope"), "no checkpoint")
    assert_user_error(invoke("train", "--resume", tmp_path / "nope"), "no checkpoint")


def test_corrupt_checkpoint(run, tmp_path):
    bad = tmp_path / "bad" / "checkpoints" / "last.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((run / "checkpoints" / "last.pt").read_bytes()[:500])
    assert_user_error(invoke("sample", bad.parents[1], "--out", tmp_path / "x.pt"), "corrupt")
    assert_user_error(invoke("evaluate", bad), "corrupt")
    assert_user_error(invoke("train", "--resume", bad.parents[1]), "corrupt")


def test_bad_set_key_and_values(tmp_path):
    assert_user_error(invoke("train", "--out", tmp_path / "a", "--set", "epsmax=0.1"), "epsmax")
    assert_user_error(invoke("train", "--out", tmp_path / "a", "--set", "lr=-1"), "lr")
    assert_user_error(invoke("train", "--out", tmp_path / "a", "--set", "steps=many"), "steps")
    assert_user_error(invoke("train", "--out", tmp_path / "a", "--set", "eps_max"), "key=value")
    assert_user_error(invoke("train", "--out", tmp_path / "a", "--preset", "imagenet"), "imagenet")
    assert_user_error(invoke("train", "--out", tmp_path / "a", "--dataset", "mnist", *TINY), "mnist")
    assert_user_error(invoke("train"), "--out")
    assert not (tmp_path / "a" / "checkpoints").exists()


def test_bad_resume_override(run):
    assert_user_error(invoke("train", "--resume", run, "--set", "tau_star=7"), "tau_star")


def test_unknown_sampler_and_bad_counts(run, tmp_path):
    assert_user_error(invoke("sample", run, "--sampler", "gibbs", "--out", tmp_path / "x.pt"), "gibbs")
    assert_user_error(invoke("evaluate", run, "--sampler", "gibbs"), "gibbs")
    assert_user_error(invoke("sample", run, "--n", "0", "--out", tmp_path / "x.pt"), "--n")
    assert_user_error(invoke("sample", run, "--t-end", "-1", "--out", tmp_path / "x.pt"), "--t-end")
    assert not (tmp_path / "x.pt").exists()


def test_out_on_an_existing_run_is_refused(run):
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert_user_error(invoke("train", "--out", run, *TINY), "--resume")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_divergence_is_one_line(tmp_path):
    # Independent pairing of NaN-free data with lr = 1e30: the weights overflow at once.
    result = invoke("train", "--out", tmp_path / "d", *TINY, "--lr", "1e30", "--set", "lr_warmup_steps=0",
                    "--set", "grad_clip=none", "--set", "checkpoint_every=1")
    assert_user_error(result, "loss became", "--resume")


def test_subprocess_train_and_sample(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "energyflow.cli"]
    train = subprocess.run([*cmd, "train", "--out", str(out), *TINY], env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    samples = tmp_path / "s.pt"
    sample = subprocess.run([*cmd, "sample", str(out), "--n", "20", "--out", str(samples)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert torch.load(samples, weights_only=True).shape == (20, 2)
    assert samples.with_suffix(".png").is_file()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_img") / "digits"
    result = invoke(
        "train", "--preset", "mnist", "--out", out, "--steps", "3", "--batch-size", "8", "--device", "cpu",
        "--set", "hidden=8", "--set", "depth=1", "--set", "num_langevin_steps=3", "--set", "phase1_steps=2",
        "--set", "eval_every=1000", "--set", "eval_samples=16", "--set", "sample_t_end=1.05",
    )
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_nll_and_lid_on_images_use_the_held_out_split(image_run, tmp_path):
    js = tmp_path / "m.json"
    result = invoke("evaluate", image_run, "--n", "16", "--t-end", "1.05", "--nll", "--ais-chains", "16",
                    "--ais-steps", "10", "--lid", "3", "--json", js)
    assert result.exit_code == 0, result.output
    m = json.loads(js.read_text())
    # A degenerate AIS run is flagged: log Z from few effective chains is biased low.
    assert ("warning: the AIS effective sample size" in result.stdout) == (m["ais_ess"] < 0.1 * 16)
    assert m["nll_points"] == 359 and m["nll_per_dim"] == pytest.approx(m["nll"] / 64)  # all held-out digits
    assert m["lid_points"] == 3 and 0 <= m["lid_min"] <= m["lid_max"] <= 64


def test_condition_writes_grids_metrics_and_baselines(image_run, tmp_path):
    result = invoke("condition", image_run, "--task", "inpaint_box", "--n-images", "2", "--chains", "2",
                    "--out", tmp_path / "cond", "--t-end", "1.05")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cond" / "inpaint_box_metrics.json").read_text())
    assert set(report["metrics"]) == {"posterior", "posterior+repulsion", "nearest_neighbour", "unconditional"}
    assert report["metrics"]["posterior"]["diversity"] >= 0
    assert report["guidance"] is True and report["guidance_weight"] == pytest.approx(0.1)  # the preset's eps_max
    assert (tmp_path / "cond" / "inpaint_box_posterior.png").stat().st_size > 0
    draws = torch.load(tmp_path / "cond" / "inpaint_box_posterior.pt", weights_only=True)
    assert draws.shape == (2, 2, 1, 8, 8)


def test_condition_refuses_non_image_runs_and_bad_tasks(run, image_run, tmp_path):
    assert_user_error(invoke("condition", run, "--out", tmp_path / "c"), "image domain")
    assert_user_error(invoke("condition", image_run, "--task", "colorize", "--out", tmp_path / "c"), "choose one of")
    assert_user_error(invoke("condition", image_run, "--chains", "0", "--out", tmp_path / "c"), "--chains")
    assert_user_error(invoke("condition", image_run, "--no-guidance", "--guidance-weight", "0.2", "--out", tmp_path / "c"),
                      "guidance_weight")


def test_condition_without_guidance_records_it(image_run, tmp_path):
    result = invoke("condition", image_run, "--task", "inpaint_half", "--n-images", "1", "--chains", "2", "--no-repulsion",
                    "--no-guidance", "--out", tmp_path / "cond", "--t-end", "1.05")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cond" / "inpaint_half_metrics.json").read_text())
    assert report["guidance"] is False and report["guidance_weight"] is None
    assert set(report["metrics"]) == {"posterior", "nearest_neighbour", "unconditional"}


def test_set_reaches_the_option_tables(tmp_path):
    from energyflow.cli import _parse_overrides

    assert _parse_overrides(["domain_options.dataset=rings", "domain_options.test_size=50",
                             'network_options={"hidden": 8}', "network_options.depth=1", "lr=0.1"]) == {
        "dataset": "rings", "domain_options": {"test_size": 50}, "network_options": {"hidden": 8, "depth": 1},
        "lr": 0.1}
    out = tmp_path / "r"
    result = invoke("train", "--out", out, *TINY, "--set", "domain_options.test_size=50",
                    "--set", "domain_options.dataset=rings", "--set", "network_options.hidden=8")
    assert result.exit_code == 0, result.output
    config = load_checkpoint(out)["config"]
    assert (config["dataset"], config["domain_options"], config["network_options"]) == ("rings", {"test_size": 50},
                                                                                       {"hidden": 8})
    # a resumed run keeps its options and merges new ones into them
    result = invoke("train", "--resume", out, "--steps", "5", "--set", "network_options.depth=2")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)["config"]["network_options"] == {"hidden": 8, "depth": 2}
