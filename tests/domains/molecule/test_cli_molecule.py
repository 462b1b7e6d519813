"""The molecule domain end to end through the CLI: train a few steps on RDKit's NCI set, sample SMILES, evaluate."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("rdkit")

from energyflow.cli import app  # noqa: E402

TINY = ["--steps", "4", "--batch-size", "8", "--set", "phase1_steps=2", "--set", "hidden=8", "--set", "depth=1",
        "--set", "num_langevin_steps=2", "--set", "eval_samples=4", "--set", "sample_t_end=0.1"]


def test_train_sample_and_evaluate_a_molecule_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGYFLOW_CACHE", str(tmp_path / "cache"))  # the property regressors are cached there
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--domain", "molecule", "--dataset", "nci", "--out", str(run), *TINY])
    assert res.exit_code == 0, res.output
    out = tmp_path / "mols.smi"
    res = runner.invoke(app, ["sample", str(run), "--n", "6", "--out", str(out), "--no-plot"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and all(line.split("\t")[-1] in ("valid", "corrected") for line in lines)
    # a .pt output keeps the states and writes the SMILES beside them
    res = runner.invoke(app, ["sample", str(run), "--n", "3", "--out", str(tmp_path / "s.pt"), "--no-plot"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.pt").is_file() and len((tmp_path / "s.smi").read_text().splitlines()) == 3
    res = runner.invoke(app, ["evaluate", str(run), "--n", "6"])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output and "fcd" in res.output
    # valence guidance: runs through sample and evaluate, refuses a Metropolis sampler and a negative weight
    res = runner.invoke(app, ["sample", str(run), "--n", "4", "--out", str(tmp_path / "v.smi"), "--no-plot",
                              "--valence", "1"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "v.smi").read_text().splitlines()) == 4
    res = runner.invoke(app, ["evaluate", str(run), "--n", "4", "--valence", "1"])
    assert res.exit_code == 0, res.output
    for bad, message in ((["--valence", "1", "--sampler", "mala"], "langevin"), (["--valence", "-1"], "--valence")):
        res = runner.invoke(app, ["sample", str(run), "--n", "2", "--out", str(tmp_path / "w.smi"), *bad])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(app, ["condition", str(run), "--task", "property", "--target", "qed=0.7", "--n-images", "4", "--regressor-steps", "50",
                              "--out", str(tmp_path / "design")])
    assert res.exit_code == 0, res.output
    assert "training distribution" in res.output and (tmp_path / "design" / "design.json").is_file()
    res = runner.invoke(app, ["condition", str(run), "--task", "property", "--target", "logp=2",
                              "--out", str(tmp_path / "design2")])
    assert res.exit_code == 2 and "logp" in res.output


def test_train_on_a_users_smiles_file(tmp_path):
    data = tmp_path / "mols.smi"
    data.write_text("\n".join(["CCO", "CC=O", "C#N", "OCC(F)F", "CN", "c1ccccc1", "CC(C)O", "NCC=O"]) + "\n")
    res = CliRunner().invoke(app, ["train", "--domain", "molecule", "--data", str(data), "--out", str(tmp_path / "r"),
                                   *TINY])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.smi"
    bad.write_text("CCCl\nCCO\n")
    res = CliRunner().invoke(app, ["train", "--domain", "molecule", "--data", str(bad), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "Cl" in res.output
