"""What a user types never destroys data, hides a bug or silently changes a value (issue 8).

Every case runs through the command line (Typer's CliRunner, or a subprocess where the
process matters) and failed on the code before this change.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from cli_helpers import TINY, invoke, train_tiny
from cli_helpers import assert_user_error as user_error

from energyflow.cli import DEMO_FILES, DEMO_MARKER, app
from energyflow.training import load_checkpoint, read_metrics

# The demo at its smallest: 4 steps (2 with CD); it still evaluates 2000 samples and plots (~5 s).
DEMO = ["--steps", "4", "--cd-steps", "2"]

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("bad_input") / "run")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- data loss -------------------------------------------------------------------------------
def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"my own model")
    (folder / "thesis.tex").write_text("years of work")
    before = snapshot(folder)
    user_error(invoke("demo", "--out", folder, *DEMO), "not made by `energyflow demo`", "--force")
    assert snapshot(folder) == before


def test_demo_in_the_current_directory_keeps_its_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("keep me")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    user_error(invoke("demo", "--out", ".", *DEMO), "--force")
    assert Path("notes.txt").read_text() == "keep me" and Path("checkpoints/last.pt").read_bytes() == b"x"


def test_demo_force_replaces_only_its_own_files_and_reruns_in_its_own_folder(tmp_path):
    folder = tmp_path / "shared"
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "my_figure.png").write_bytes(b"mine")
    (folder / "data.csv").write_text("1,2\n")
    (folder / "config.toml").write_text("# an old demo config\n")
    result = invoke("demo", "--out", folder, *DEMO, "--force")
    assert result.exit_code == 0, result.output
    assert (folder / "data.csv").read_text() == "1,2\n" and (folder / "plots" / "my_figure.png").read_bytes() == b"mine"
    assert load_checkpoint(folder)["step"] == 4 and (folder / DEMO_MARKER).is_file()
    assert "old demo" not in (folder / "config.toml").read_text()
    # The folder is now the demo's own: a second demo replaces its files without --force.
    first = load_checkpoint(folder)
    result = invoke("demo", "--out", folder, *DEMO, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert not torch.equal(load_checkpoint(folder)["model"]["0.weight"], first["model"]["0.weight"])
    assert (folder / "data.csv").is_file() and (folder / "plots" / "my_figure.png").is_file()
    assert [r["step"] for r in read_metrics(folder) if r["kind"] == "train"][-1] == 4
    assert set(DEMO_FILES) >= {"config.toml", "metrics.jsonl", "checkpoints/last.pt"}


def test_sample_never_overwrites_a_checkpoint(run, tmp_path):
    checkpoint = run / "checkpoints" / "last.pt"
    before = checkpoint.read_bytes()
    user_error(invoke("sample", run, "--n", "8", "--out", checkpoint), "checkpoint")
    copy = tmp_path / "model.pt"
    copy.write_bytes(before)  # a checkpoint under another name is protected too
    user_error(invoke("sample", run, "--n", "8", "--out", copy), "checkpoint")
    assert checkpoint.read_bytes() == before and copy.read_bytes() == before


def test_a_new_run_in_a_folder_left_by_a_killed_run_starts_a_clean_log(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    stale = [{"kind": "train", "step": s, "phase": 1, "loss": 9.0} for s in (1, 2, 3, 4, 5)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale))
    result = invoke("train", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(out) if r["kind"] == "train"] == [1, 2, 3, 4]
    assert all(r.get("loss") != 9.0 for r in read_metrics(out))
    kept = list(out.glob("metrics.*.jsonl.old"))
    assert len(kept) == 1 and kept[0].read_text().count("\n") == 5 and kept[0].name in result.stdout


def test_train_never_overwrites_a_config_it_did_not_write(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.toml").write_text("[tool.mine]\nkeep = true\n")
    user_error(invoke("train", "--out", out, *TINY), "config.toml", "not an energyflow run config")
    assert (out / "config.toml").read_text() == "[tool.mine]\nkeep = true\n"


def test_a_failing_final_evaluation_keeps_the_trained_checkpoint(tmp_path, monkeypatch):
    from energyflow.domains.toy import ToyDomain
    from energyflow.errors import InvalidValueError

    def failing(self, samples, reference=None):
        raise InvalidValueError("the metric refused these samples")

    monkeypatch.setattr(ToyDomain, "metrics", failing)
    out = tmp_path / "r"
    err = user_error(invoke("train", "--out", out, *TINY), "evaluation at step 4", "metric refused")
    assert f"{out / 'checkpoints' / 'last.pt'} holds the model of step 4" in err
    assert load_checkpoint(out)["step"] == 4


def test_too_few_evaluation_samples_are_refused_before_training(tmp_path):
    user_error(invoke("train", "--out", tmp_path / "r", *TINY, "--set", "eval_samples=1"), "eval_samples must be >= 2")
    assert not (tmp_path / "r").exists()


def test_orphaned_temporary_checkpoints_are_removed_on_start(run):
    orphan = run / "checkpoints" / ".last.pt.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    result = invoke("train", "--resume", run, "--steps", "4")
    assert result.exit_code == 0, result.output
    assert not orphan.exists()


# --- bugs hidden or mislabelled --------------------------------------------------------------
def test_a_library_bug_keeps_its_traceback_and_says_it_is_a_bug(run, tmp_path, monkeypatch):
    import energyflow.training.run as run_module

    def broken(*args, **kwargs):
        raise ValueError("an internal shape bug")

    monkeypatch.setattr(run_module, "build_network", broken)  # what load_potential calls
    result = invoke("sample", run, "--n", "4", "--out", tmp_path / "s.pt")
    assert result.exit_code == 1, result.output
    assert "Traceback" in result.stderr and "an internal shape bug" in result.stderr
    assert "bug in energyflow" in result.stderr
    # --debug re-raises it (and user errors too) with the original exception.
    result = invoke("--debug", "sample", run, "--n", "4", "--out", tmp_path / "s.pt")
    assert isinstance(result.exception, ValueError) and "internal shape bug" in str(result.exception)
    monkeypatch.undo()
    result = invoke("--debug", "sample", run, "--n", "0", "--out", tmp_path / "s.pt")
    from energyflow.errors import EnergyflowError

    assert isinstance(result.exception, EnergyflowError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_one_line_and_never_called_corrupt(run, tmp_path):
    for result in (
        invoke("train", "--out", tmp_path / "r", *TINY[:-2], "--device", "cuda"),
        invoke("sample", run, "--n", "4", "--out", tmp_path / "s.pt", "--device", "cuda"),
        invoke("evaluate", run, "--n", "4", "--device", "cuda:1"),
    ):
        err = user_error(result, "not available")
        assert "corrupt" not in err
    user_error(invoke("sample", run, "--out", tmp_path / "s.pt", "--device", "gpu"), "unknown device")
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_device_auto_works_in_sample_and_evaluate(run, tmp_path):
    assert invoke("sample", run, "--n", "8", "--out", tmp_path / "s.pt", "--device", "auto", "--no-plot").exit_code == 0
    assert invoke("evaluate", run, "--n", "8", "--device", "auto").exit_code == 0


def test_output_paths_are_checked_before_the_work(run, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    user_error(invoke("sample", run, "--out", a_file / "s.pt"), str(a_file), "a file")
    user_error(invoke("sample", run, "--out", tmp_path), "is a folder")
    user_error(invoke("evaluate", run, "--n", "8", "--json", a_file / "m.json"), "a file")
    user_error(invoke("train", "--out", a_file / "run", *TINY), "a file")
    user_error(invoke("condition", run, "--out", a_file / "c"), "a file")
    # /proc takes no new folders, even for root: the same one-line error.
    user_error(invoke("sample", run, "--out", "/proc/energyflow-test/s.pt"), "cannot be written")
    if os.geteuid() != 0:  # root writes anywhere chmod forbids
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        user_error(invoke("sample", run, "--out", locked / "s.pt"), "cannot be written")


@pytest.mark.parametrize("t_end, needle", [("inf", "finite"), ("nan", "finite"), ("1e7", "1,000,000,000 sampler steps")])
def test_absurd_sampler_times_are_refused(run, tmp_path, t_end, needle):
    user_error(invoke("sample", run, "--t-end", t_end, "--out", tmp_path / "s.pt"), needle)
    user_error(invoke("evaluate", run, "--t-end", t_end), needle)
    assert not (tmp_path / "s.pt").exists()


def test_a_raw_pickle_is_refused_as_unsafe_without_torch_warnings(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"format": "energyflow-checkpoint-v1", "x": Payload()}, fh, protocol=4)
    err = user_error(invoke("sample", bad, "--out", tmp_path / "s.pt"), "refused", "not a safe checkpoint")
    assert "corrupt" not in err


# --- values changed silently -----------------------------------------------------------------
# steps=4.7 rather than the 1.7: with TINY's phase1_steps=2, 1.7 -> 1 also broke another rule.
@pytest.mark.parametrize("setting", ["steps=4.7", "batch_size=true", "hidden=2.9", "eps_max=false"])
def test_integers_and_numbers_are_never_rounded_or_cast(tmp_path, setting):
    field, value = setting.split("=")
    shown = {"true": "True", "false": "False"}.get(value, value)  # --set values are read as JSON
    user_error(invoke("train", "--out", tmp_path / "r", *TINY, "--set", setting), f"{field} must be", f"got {shown}")
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_too_few_ais_levels_are_refused(run):
    user_error(invoke("evaluate", run, "--n", "8", "--nll", "--ais-steps", "0"), "--ais-steps")


def test_resume_below_the_current_step_is_refused_and_changes_nothing(run):
    config_before = (run / "config.toml").read_text()
    user_error(invoke("train", "--resume", run, "--steps", "2"), "at step 4", "--steps 2")
    assert (run / "config.toml").read_text() == config_before and load_checkpoint(run)["config"]["steps"] == 4


def test_resume_refuses_a_preset_it_would_ignore(run):
    user_error(invoke("train", "--resume", run, "--preset", "mnist"), "--preset")


# --- presets and domains ---------------------------------------------------------------------
def test_an_unknown_preset_names_the_presets(tmp_path):
    user_error(invoke("train", "--out", tmp_path / "r", "--preset", "aav-easy"), "aav_medium")
    assert not (tmp_path / "r").exists()


def test_a_domain_alone_trains_with_its_default_preset(tmp_path):
    out = tmp_path / "digits"
    result = invoke("train", "--domain", "image", "--out", out, "--steps", "2", "--batch-size", "8", "--device", "cpu",
                    "--set", "hidden=8", "--set", "depth=1", "--set", "num_langevin_steps=2", "--set", "phase1_steps=1",
                    "--set", "eval_every=1000", "--set", "eval_samples=16", "--set", "sample_t_end=1.05")
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(out)["config"]
    assert (cfg["domain"], cfg["dataset"], cfg["tau_star"], cfg["eps_max"]) == ("image", "digits", 1.0, 0.1)


def test_a_preset_for_another_domain_is_refused(tmp_path):
    user_error(invoke("train", "--out", tmp_path / "r", "--preset", "mnist", "--domain", "toy"), "image domain")


# --- also ----------------------------------------------------------------------------------
def test_under_torchrun_only_rank_zero_prints(tmp_path):
    quiet = invoke("train", "--out", tmp_path / "r1", *TINY, env={"RANK": "1"})
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.strip() == ""
    loud = invoke("train", "--out", tmp_path / "r0", *TINY, env={"RANK": "0"})
    assert "run directory" in loud.stdout


def test_every_boolean_option_is_a_flag_with_a_negative_form_when_on_by_default():
    command = typer.main.get_command(app)
    flags = []
    for name, sub in command.commands.items():
        for param in sub.params:
            if isinstance(param.default, bool):  # every boolean option has a bool default
                assert param.is_flag, f"{name} {param.opts} takes a value"
                if param.default:
                    assert param.secondary_opts, f"{name} {param.opts} is on by default and has no --no- form"
                flags.append((name, param.opts[0]))
    assert {("evaluate", "--nll"), ("sample", "--plot"), ("condition", "--compare-repulsion")} <= set(flags)
    nll = next(p for p in command.commands["evaluate"].params if p.name == "nll")
    assert nll.secondary_opts == ["--no-nll"]
    assert invoke("evaluate", "x", "--nll", "true").exit_code == 2  # a flag takes no value


def test_errors_print_one_line_in_a_real_process(tmp_path):
    """The same in a subprocess: exit 2, one line, no traceback, no torch warning."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "energyflow.cli", "train", "--out", str(tmp_path / "r"), "--set",
                           "steps=1.7"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "steps" in proc.stderr


def test_unknown_options_name_the_valid_ones(tmp_path):
    user_error(invoke("train", "--out", tmp_path / "r", *TINY, "--set", "domain_options.split_seed=1"),
               "toy domain has no option(s) split_seed", "dataset, source, test_size")
    user_error(invoke("train", "--out", tmp_path / "r", *TINY, "--set", "steps.max=1"),
               "only domain_options and network_options take a dotted KEY.OPTION")
    assert not (tmp_path / "r").exists()
