"""Checkpoints: round trip, refusal of corrupt, foreign and code-carrying files, atomic writes."""

from __future__ import annotations

import os
import pickle
import random

import pytest
import torch

from energyflow.training import checkpoint as ck
from energyflow.training.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint


def state():
    g = torch.Generator().manual_seed(0)
    return {
        "step": 7,
        "model": {"w": torch.randn(3, 2, generator=g), "b": torch.zeros(3, dtype=torch.float64)},
        "ema": None,
        "rng": [[torch.Generator().manual_seed(1).get_state()]],
        "config": {"lr": 1e-4, "betas": [0.9, 0.95], "dataset": "moons", "clamp_beta": None},
    }


class Payload:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip(tmp_path):
    s = state()
    path = save_checkpoint(s, tmp_path / "sub" / "last.pt")
    assert path == tmp_path / "sub" / "last.pt"
    back = load_checkpoint(path)
    assert back["format"] == FORMAT and back["step"] == 7 and back["ema"] is None
    assert torch.equal(back["model"]["w"], s["model"]["w"]) and back["model"]["b"].dtype == torch.float64
    assert torch.equal(back["rng"][0][0], s["rng"][0][0])
    assert back["config"] == s["config"]
    # The file is readable by plain torch.load with weights_only=True (no custom classes).
    assert torch.load(path, weights_only=True)["step"] == 7


def test_a_run_directory_resolves_to_last_pt(tmp_path):
    save_checkpoint(state(), tmp_path / "checkpoints" / "last.pt")
    assert load_checkpoint(tmp_path)["step"] == 7
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "elsewhere")


def write_and_load(tmp_path, data: bytes):
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg.strip()
    return msg


def test_truncated_checkpoint_is_refused(tmp_path):
    good = save_checkpoint(state(), tmp_path / "good.pt").read_bytes()
    for cut in (len(good) // 2, len(good) - 30, 10):
        msg = write_and_load(tmp_path, good[:cut])
        assert "corrupt" in msg or "truncated" in msg


@pytest.mark.parametrize("kind", ["empty", "garbage", "text", "zeros"])
def test_garbage_is_refused_with_a_clear_message(tmp_path, kind):
    data = {
        "empty": b"",
        "garbage": bytes(random.Random(0).randrange(256) for _ in range(4096)),
        "text": b"hello world\n" * 100,
        "zeros": bytes(1000),
    }[kind]
    msg = write_and_load(tmp_path, data)
    assert "not a readable checkpoint" in msg
    assert "PyTorch 2.6" not in msg  # the informative line, not torch's generic advice


def test_torch_saved_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "step": 1, "x": Payload(marker)}, path)
    assert not marker.exists()  # saving only records the call
    with pytest.raises(CheckpointError, match="refused: .* is not a safe checkpoint") as info:
        load_checkpoint(path)
    assert "system" in str(info.value)  # names what it refused to call
    assert not marker.exists()


def test_plain_pickle_with_code_is_refused_and_never_run(tmp_path):
    import warnings

    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with open(path, "wb") as fh:
            pickle.dump({"format": FORMAT, "x": Payload(marker)}, fh, protocol=protocol)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's "Detected pickle protocol" warning must not reach the user
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(path)
        msg = str(info.value)
        assert "refused" in msg and "not a safe checkpoint" in msg and "corrupt" not in msg
        assert not marker.exists()
    # Sanity check of the payload itself: an unsafe load would have run it.
    with open(path, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_foreign_files_are_refused(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="not an energyflow checkpoint"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save({"format": "something-else", "step": 1}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="something-else"):
        load_checkpoint(tmp_path / "b.pt")
    torch.save(torch.ones(3), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="Tensor"):
        load_checkpoint(tmp_path / "c.pt")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "last.pt"
    save_checkpoint(state(), target)
    save_checkpoint({**state(), "step": 8}, target)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(target)["step"] == 8


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    save_checkpoint(state(), target)
    real_save = torch.save

    def crash(obj, fh, *a, **k):
        real_save(obj, fh, *a, **k)
        fh.truncate(100)  # half-written
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({**state(), "step": 99}, target)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # temp file removed
    assert load_checkpoint(target)["step"] == 7  # the previous checkpoint is intact
