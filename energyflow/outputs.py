"""Checks on output paths, made before any expensive work starts.

A sampling run of minutes that fails at the end because its output folder is read-only,
or that overwrites the model it sampled from, is the worst kind of error: these
functions find such problems first and raise :class:`~energyflow.errors.OutputPathError`
with a message that names the path.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     check_output_file(pathlib.Path(d) / "new" / "samples.pt", "--out").name
    'samples.pt'
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from energyflow.errors import OutputPathError


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | os.PathLike[str], what: str, *, named: str | os.PathLike[str] | None = None) -> Path:
    """Makes sure ``path`` is a folder we can write into, or one we can create; creates nothing.

    Args:
        path: the folder.
        what (str): how the user named it (``"--out"``), for the message.
        named: the path the user gave, when ``path`` is its folder (for the message).

    Raises:
        OutputPathError: ``path`` or one of its parents is a file, or the folder (or
            the nearest existing parent it would be created in) cannot be written.
    """
    path = Path(path)
    shown = Path(named) if named is not None else path
    base = _first_existing(path)
    if not base.is_dir():
        where = "is" if base == shown else f"lies under {base}, which is"
        raise OutputPathError(f"{what} {shown} {where} a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise OutputPathError(f"{what} {shown} cannot be written ({base}: {err.strerror or err})") from None
    return path


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a file written by ``torch.save`` that holds an energyflow checkpoint.

    Only the archive's table of contents is read (no unpickling), so this is cheap and safe.
    """
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl")]
            return bool(pickles) and b"energyflow-checkpoint" in archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile):
        return False


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """Makes sure a file can be written at ``path`` without destroying anything; creates nothing.

    Args:
        path: the file to write.
        what (str): how the user named it (``"--out"``), for the message.

    Raises:
        OutputPathError: ``path`` is a folder or a checkpoint, or its folder cannot be
            written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; name a file in it, e.g. {path / 'samples.pt'}")
    if is_checkpoint(path):
        raise OutputPathError(f"{what} {path} is a checkpoint; refusing to overwrite a model, choose another file")
    check_output_dir(path.parent, what, named=path)
    return path
