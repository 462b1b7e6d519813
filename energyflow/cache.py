"""The cache of train-once models (the digit classifier, property regressors) and encoded data sets.

Everything lives in one folder, ``$ENERGYFLOW_CACHE`` or ``~/.cache/energyflow``. A cached
model is a ``torch.save`` payload dict carrying a ``key`` (a hash of its recipe and data):
:func:`load_payload` reads it back with ``weights_only=True`` and returns None for a
missing, truncated, foreign or stale file, so the caller retrains and
:func:`save_payload` overwrites it atomically (a temporary file, then :func:`os.replace`).

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> save_payload({"key": "abc", "w": torch.ones(2)}, cache_dir(d) / "m.pt", "a model")
    >>> load_payload(cache_dir(d) / "m.pt", "abc")["w"].tolist(), load_payload(cache_dir(d) / "m.pt", "other")
    ([1.0, 1.0], None)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_dir", "load_payload", "save_payload"]


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` if given, else ``$ENERGYFLOW_CACHE``, else ``~/.cache/energyflow``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("ENERGYFLOW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "energyflow"


def load_payload(path: Path, key: str) -> dict[str, Any] | None:
    """The payload at ``path`` if it loads safely and carries ``key``; None otherwise (retrain)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: the caller retrains and overwrites it
        return None
    return payload if isinstance(payload, dict) and payload.get("key") == key else None


def save_payload(payload: dict[str, Any], path: Path, what: str) -> None:
    """Writes ``payload`` to ``path`` atomically; warns (and keeps going) when the folder is not writable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not cache {what} in {path} ({err}); it will be retrained next time",
                      RuntimeWarning, stacklevel=3)
