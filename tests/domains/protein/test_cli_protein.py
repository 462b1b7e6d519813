"""The protein domain end to end through the CLI: train a few steps on the medium task, sample, evaluate, design."""

from __future__ import annotations

import json

import numpy as np

import pytest
from typer.testing import CliRunner

pytest.importorskip("rapidfuzz")

from energyflow.cli import app  # noqa: E402

# A few steps of everything: the VAE (vae_steps), the potential, the predictor and the oracle.
TINY = ["--steps", "4", "--batch-size", "8", "--set", "phase1_steps=2", "--set", "hidden=8", "--set", "depth=1",
        "--set", "num_langevin_steps=2", "--set", "eval_samples=8", "--set", "domain_options.vae_steps=20"]
DESIGN = ["--n", "24", "--top", "6", "--seeds", "2", "--t-end", "1.0", "--predictor-steps", "3", "--oracle-steps", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("protein")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENERGYFLOW_CACHE", str(base / "cache"))
        res = CliRunner().invoke(app, ["train", "--preset", "aav-medium", "--out", str(base / "run"), *TINY])
        assert res.exit_code == 0, res.output
        yield base / "run"


def test_sample_and_evaluate_a_protein_run(run, tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGYFLOW_CACHE", str(run.parent / "cache"))
    runner = CliRunner()
    out = tmp_path / "seqs.fasta"
    res = runner.invoke(app, ["sample", str(run), "--n", "5", "--out", str(out), "--no-plot"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert len(lines) == 10 and all(len(s) == 28 for s in lines[1::2])
    res = runner.invoke(app, ["evaluate", str(run), "--n", "8"])
    assert res.exit_code == 0, res.output
    assert "novelty" in res.output and "w2" in res.output


def test_design_writes_designs_a_summary_and_the_published_rows(run, tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGYFLOW_CACHE", str(run.parent / "cache"))
    out = tmp_path / "design"
    res = CliRunner().invoke(app, ["design", str(run), *DESIGN, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "AdaLead" in res.output and "CbAS" in res.output  # the published rows beside ours
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and len(summary["per_seed"]) == 2
    assert {"median_fitness", "diversity", "novelty"} <= set(summary["summary"])
    header, *rows = (out / "designs_seed0.csv").read_text().splitlines()
    assert header == "sequence,predicted_fitness,oracle_fitness,novelty" and 1 <= len(rows) <= 6


def test_design_min_distance_reaches_the_selection(run, tmp_path, monkeypatch):
    from energyflow.domains.protein.metrics import levenshtein_matrix

    monkeypatch.setenv("ENERGYFLOW_CACHE", str(run.parent / "cache"))
    out = tmp_path / "spread"
    res = CliRunner().invoke(app, ["design", str(run), *DESIGN, "--min-distance", "3", "--seeds", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "summary.json").read_text())["config"]["min_distance"] == 3
    seqs = [line.split(",")[0] for line in (out / "designs_seed0.csv").read_text().splitlines()[1:]]
    d = levenshtein_matrix(seqs, seqs)
    # Either every pair keeps 3 edits, or the candidates ran out and the rest filled the set (select_top's rule).
    assert len(seqs) >= 1 and (len(seqs) < 2 or d[np.triu_indices(len(seqs), 1)].min() >= 3 or len(seqs) == 6)


def test_a_repulsion_sweep_plots_the_tradeoff(run, tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGYFLOW_CACHE", str(run.parent / "cache"))
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["design", str(run), *DESIGN, "--seeds", "1", "--repulsion", "rbf:1,10",
                                   "--out", str(out)])  # the last --seeds wins: one seed per setting
    assert res.exit_code == 0, res.output
    assert (out / "tradeoff.png").is_file() and {p.name for p in out.iterdir() if p.is_dir()} == {
        "none", "rbf_1", "rbf_10"}
    assert len(json.loads((out / "sweep.json").read_text())) == 3


def test_design_with_the_smoothed_predictor_records_its_graph(run, tmp_path, monkeypatch):
    from energyflow.domains.protein import smoothing

    monkeypatch.setenv("ENERGYFLOW_CACHE", str(run.parent / "cache"))
    # A small graph and a short retraining (the defaults are 50,000 nodes and 2,000 steps).
    monkeypatch.setitem(smoothing.SMOOTHING_RECIPE, "nodes", 2500)
    monkeypatch.setitem(smoothing.SMOOTHING_RECIPE, "steps", 3)
    out = tmp_path / "design"
    res = CliRunner().invoke(app, ["design", str(run), *DESIGN, "--seeds", "1", "--predictor", "smoothed",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "smoothed predictor" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["predictor"] == "smoothed" and summary["config"]["select_by"] is None
    assert summary["predictor"]["nodes"] == 2500 and "plain" in summary["predictor"]
    # The smoothed one started from the plain predictor of --predictor-steps 3 (the cached one).
    assert summary["predictor"]["plain"]["n_train"] == 2111
    # Guided by the plain predictor, selected by the smoothed one: both recorded.
    out2 = tmp_path / "split"
    res = CliRunner().invoke(app, ["design", str(run), *DESIGN, "--seeds", "1", "--select-by", "smoothed",
                                   "--out", str(out2)])
    assert res.exit_code == 0, res.output
    assert "plain predictor, selected by the smoothed one" in " ".join(res.output.split())
    summary = json.loads((out2 / "summary.json").read_text())
    assert "nodes" not in summary["predictor"] and summary["selector"]["nodes"] == 2500


def test_design_min_diversity_reaches_the_selection(run, tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGYFLOW_CACHE", str(run.parent / "cache"))
    out = tmp_path / "diverse"
    res = CliRunner().invoke(app, ["design", str(run), *DESIGN, "--min-diversity", "30", "--seeds", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["min_diversity"] == 30
    assert "diversity >= 30" in " ".join(res.output.split())  # the table says what the selection asked for
    # 28 residues are never 30 edits apart: the target is out of reach, so the most diverse set is kept
    # at the search's largest weight (> 0; 0 would be the plain top-k).
    assert summary["per_seed"][0]["selection_weight"] > 0


@pytest.mark.parametrize("args, message", [(["--repulsion", "magnet:1"], "KIND"), (["--seeds", "0"], "--seeds"),
                                           (["--predictor-steps", "0"], "--predictor-steps"),
                                           (["--predictor", "oracle"], "unknown predictor"),
                                           (["--select-by", "oracle"], "unknown predictor"),
                                           (["--min-distance", "-1"], "min_distance"),
                                           (["--min-diversity", "-1"], "min_diversity")])
def test_design_refuses_bad_input_in_one_line(run, tmp_path, args, message):
    res = CliRunner().invoke(app, ["design", str(run), *args, "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and message in res.output


def test_design_refuses_a_run_of_another_domain(tmp_path):
    runner = CliRunner()
    toy = tmp_path / "toy"
    res = runner.invoke(app, ["train", "--domain", "toy", "--out", str(toy), "--steps", "2", "--batch-size", "8",
                              "--set", "phase1_steps=2", "--set", "hidden=8", "--set", "depth=1",
                              "--set", "eval_samples=8"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["design", str(toy), "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "protein" in res.output
