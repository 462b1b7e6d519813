"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values (no pickled code), so it is
safe to load from an untrusted source. Writes go to a temporary file in the same
directory, are flushed to disk and then renamed over the target, so a crash never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from energyflow.errors import EnergyflowError

FORMAT = "energyflow-checkpoint-v1"


class CheckpointError(EnergyflowError, ValueError):
    """A checkpoint is missing, corrupt, unsafe or not an energyflow checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Writes ``state`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_UNREADABLE = "corrupt, truncated or not a PyTorch file"


def _detail(err: BaseException) -> str:
    """The informative line of a torch.load error (skipping its generic weights-only advice)."""
    boilerplate = ("weights only load failed", "please file an issue", "check the documentation")
    for line in str(err).splitlines():
        line = line.split(" In PyTorch 2.6, we changed")[0].strip()  # drop the advice to load unsafely
        if line and not line.lower().startswith(boilerplate):
            return line
    return type(err).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Reads a checkpoint safely.

    Args:
        path: a checkpoint file, or a run directory (its ``checkpoints/last.pt``).
        map_location: where tensors go; a device that exists (see
            :func:`energyflow.training.build.resolve_device` for ``"auto"``).

    Raises:
        CheckpointError: missing file, corrupt or truncated data, pickled code or
            objects beyond tensors and plain values, or a foreign format.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80":  # a pickle stream (protocol >= 2), not torch.save's zip archive
            raise CheckpointError(
                f"refused: {path} is not a safe checkpoint: it is a raw pickle, which can run code when "
                "loaded, so energyflow never unpickles it (checkpoints are torch.save archives of tensors)"
            )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _detail(err)
        if "global" in detail.lower():  # the pickle names a function or class to call
            raise CheckpointError(
                f"refused: {path} is not a safe checkpoint: it holds pickled code or objects beyond tensors "
                f"and plain values, which a safe load never runs ({detail})"
            ) from err
        raise CheckpointError(f"{path} is not a readable checkpoint ({_UNREADABLE}): {detail}") from err
    except Exception as err:  # damaged files raise many types (EOFError, KeyError, RuntimeError, ...)
        raise CheckpointError(f"{path} is not a readable checkpoint ({_UNREADABLE}): {_detail(err)}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an energyflow checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    return state
