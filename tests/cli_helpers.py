"""What the command-line tests share: a tiny training run and the check of a one-line user error."""

from __future__ import annotations

from typer.testing import CliRunner

from energyflow.cli import app

# Four toy steps (two with CD) on a 16-wide MLP: a run in about a second.
TINY = [
    "--steps", "4", "--batch-size", "16", "--seed", "0", "--device", "cpu",
    "--set", "hidden=16", "--set", "depth=2", "--set", "num_langevin_steps=5", "--set", "phase1_steps=2",
    "--set", "eval_samples=32", "--set", "sample_t_end=0.1", "--set", "eval_every=1000", "--set", "log_every=1",
]

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def train_tiny(out):
    """Trains the TINY run into ``out`` through the CLI and returns ``out``."""
    result = invoke("train", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    return out


def assert_user_error(result, *needles: str) -> str:
    """Exit code 2, exactly one line on stderr starting with 'error:', no traceback, no warning."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output and "Warning" not in result.output
    for needle in needles:
        assert needle in err, err
    return err
