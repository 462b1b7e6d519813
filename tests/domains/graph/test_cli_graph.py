"""The graph domain end to end through the CLI: train a few steps, sample graphs to a PyG file, evaluate."""

from __future__ import annotations

import networkx as nx
import pytest
from typer.testing import CliRunner

from energyflow.cli import app
from energyflow.domains.graph import load_graph_file, save_graph_file

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_train_sample_and_evaluate_a_graph_run(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    tiny = ["--set", "network_options.hidden=8", "--set", "network_options.edge_hidden=4", "--set", "depth=1",
            "--set", "num_langevin_steps=2", "--set", "eval_samples=4", "--set", "sample_t_end=0.1"]
    res = runner.invoke(app, ["train", "--domain", "graph", "--out", str(run), "--steps", "4", "--batch-size", "8", "--set", "phase1_steps=2",
                              *tiny])
    assert res.exit_code == 0, res.output
    assert (run / "plots" / "samples.png").is_file()
    out = tmp_path / "graphs.pt"
    res = runner.invoke(app, ["sample", str(run), "--n", "6", "--out", str(out)])
    assert res.exit_code == 0, res.output
    graphs = load_graph_file(out)
    assert len(graphs) == 6 and all(isinstance(g, nx.Graph) for g in graphs)
    assert (tmp_path / "graphs.png").is_file()
    res = runner.invoke(app, ["evaluate", str(run), "--n", "6"])
    assert res.exit_code == 0, res.output
    assert "orbit" in res.output and "clustering" in res.output
    res = runner.invoke(app, ["condition", str(run), "--task", "complete", "--n-images", "3", "--chains", "2",
                              "--out", str(tmp_path / "cond")])
    assert res.exit_code == 0, res.output
    assert "training edge frequency" in res.output and (tmp_path / "cond" / "completion.png").is_file()
    import json

    scores = json.loads((tmp_path / "cond" / "completion.json").read_text())
    assert scores["graphs"] == 3 and 0 <= scores["hidden_accuracy"] <= 1


def test_train_on_a_users_graph_file(tmp_path):
    data = save_graph_file([nx.cycle_graph(k) for k in range(4, 14)], tmp_path / "cycles.pt")
    res = CliRunner().invoke(app, ["train", "--domain", "graph", "--data", str(data), "--out", str(tmp_path / "r"),
                                   "--steps", "2", "--batch-size", "4", "--set", "phase1_steps=1", "--set", "network_options.hidden=8",
                                   "--set", "network_options.edge_hidden=4", "--set", "eval_samples=2",
                                   "--set", "sample_t_end=0.05", "--set", "num_langevin_steps=2"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["train", "--domain", "graph", "--data", str(tmp_path / "nope.pt"),
                                   "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "nope.pt" in res.output
