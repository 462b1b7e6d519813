"""AAV capsid sequences and their fitness: the inverse-design tasks of GGS and Energy Matching.

The files ship in ``energyflow/data/aav/`` (MIT, from the Energy Matching repository;
licence beside them). They are the GGS splits (Kirjner et al., ICLR 2024) of the AAV
data of Bryant et al. (2021), used as shipped:

- ``medium`` (``aav_medium.csv``, 2,145 rows): 20th-40th fitness percentile and at least 6
  edits from every top-1 % sequence, plus 6 boundary rows;
- ``hard`` (``aav_hard.csv``, 3,453 rows): at most the 30th percentile and at least 7 edits,
  plus 5 boundary rows;
- ``ground_truth`` (``aav_ground_truth.csv``, 44,128 rows): every labelled sequence, the
  oracle's training data (evaluation only).

Files repeat sequences (medium 2,111 distinct, hard 3,347, ground truth 42,340), some
with different scores: :func:`load_task` and :func:`load_ground_truth` keep each
sequence once, with the mean of its scores, in the order of first appearance.
Fitness is normalised as ``(score - FITNESS_MIN) / (FITNESS_MAX - FITNESS_MIN)`` with the
ground truth's range, as the GGS evaluation does.

Example:
    >>> medium = load_task("medium")
    >>> len(medium), len(medium.sequences[0]), round(float(medium.scores.max()), 2)
    (2111, 28, 7.48)
    >>> decode(encode(["ARND" * 7])) == ["ARND" * 7]
    True
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import Tensor

from energyflow.errors import InvalidValueError

__all__ = ["ALPHABET", "FITNESS_MAX", "FITNESS_MIN", "SEQ_LEN", "SequenceSet", "TASKS", "data_dir", "decode",
           "deduplicate", "encode", "load_ground_truth", "load_task", "normalise", "read_sequences"]

#: The amino-acid letters in GGS's order: token ``k`` is ``ALPHABET[k]`` (the CNNs' one-hot channels).
ALPHABET = "ARNDCQEGHILKMFPSTWYV"
#: Residues per AAV design sequence.
SEQ_LEN = 28
#: The ground truth's score range, which normalises fitness (GGS: (score - min) / (max - min)).
FITNESS_MIN, FITNESS_MAX = 0.0, 19.53645667061
#: The design tasks and their files in :func:`data_dir`.
TASKS = {"medium": "aav_medium.csv", "hard": "aav_hard.csv"}
_INDEX = {a: i for i, a in enumerate(ALPHABET)}


@attrs.frozen(eq=False)
class SequenceSet:
    """Distinct sequences and their scores.

    Attributes:
        sequences (tuple[str, ...]): ``N`` sequences of one length.
        scores (np.ndarray): ``(N,)`` float64 raw fitness scores (NaN where unlabelled).
        name (str): where they came from.
    """

    sequences: tuple[str, ...]
    scores: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return len(self.sequences)

    def tokens(self) -> Tensor:
        """``(N, L)`` int64 tokens (:func:`encode`)."""
        return encode(list(self.sequences))


def data_dir() -> Path:
    """The folder the AAV files ship in."""
    return Path(__file__).resolve().parents[2] / "data" / "aav"


def encode(sequences: list[str] | tuple[str, ...]) -> Tensor:
    """Sequences of one length over :data:`ALPHABET` -> ``(N, L)`` int64 tokens.

    Raises:
        InvalidValueError: an empty list, sequences of different lengths, or a letter
            outside the alphabet (the message names the sequence and letter).
    """
    if isinstance(sequences, str):
        sequences = [sequences]
    sequences = list(sequences)
    if not sequences:
        raise InvalidValueError("no sequences to encode")
    length = len(sequences[0])
    out = np.empty((len(sequences), length), dtype=np.int64)
    for i, s in enumerate(sequences):
        if not isinstance(s, str) or len(s) != length:
            raise InvalidValueError(f"sequence {i} ({s!r}) does not have the length {length} of the first one")
        try:
            out[i] = [_INDEX[a] for a in s]
        except KeyError as err:
            raise InvalidValueError(f"sequence {i} ({s!r}) has the letter {err.args[0]!r}, "
                                    f"which is not one of the 20 amino acids {ALPHABET}") from None
    return torch.from_numpy(out)


def decode(tokens: Tensor) -> list[str]:
    """``(N, L)`` integer tokens -> ``N`` strings over :data:`ALPHABET`."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.is_floating_point():
        raise InvalidValueError(f"tokens must be an (N, L) integer tensor, got {tuple(tokens.shape)} {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= len(ALPHABET)):
        raise InvalidValueError(f"tokens must lie in [0, {len(ALPHABET)}), got [{int(tokens.min())}, {int(tokens.max())}]")
    letters = np.array(list(ALPHABET))
    return ["".join(row) for row in letters[tokens.cpu().numpy()]]


def normalise(scores: np.ndarray | Tensor | float) -> np.ndarray:
    """Raw scores -> normalised fitness ``(s - FITNESS_MIN) / (FITNESS_MAX - FITNESS_MIN)`` (float64)."""
    s = scores.detach().cpu().double().numpy() if isinstance(scores, Tensor) else np.asarray(scores, np.float64)
    return (s - FITNESS_MIN) / (FITNESS_MAX - FITNESS_MIN)


def deduplicate(sequences: list[str], scores: np.ndarray, name: str = "") -> SequenceSet:
    """Each sequence once, with the mean of its scores, in the order of first appearance."""
    scores = np.asarray(scores, dtype=np.float64)
    first: dict[str, int] = {}
    inverse = np.empty(len(sequences), dtype=np.int64)
    for i, s in enumerate(sequences):
        inverse[i] = first.setdefault(s, len(first))
    sums = np.bincount(inverse, weights=np.nan_to_num(scores), minlength=len(first))
    labelled = np.bincount(inverse, weights=(~np.isnan(scores)).astype(np.float64), minlength=len(first))
    mean = np.where(labelled > 0, sums / np.maximum(labelled, 1), np.nan)
    return SequenceSet(tuple(first), mean, name)


def read_sequences(path: str | os.PathLike[str]) -> SequenceSet:
    """A user's sequences: a CSV with a ``sequence`` column (and optionally ``score``), a FASTA file,
    or plain text with one sequence per line. Deduplicated (:func:`deduplicate`).

    Raises:
        FileNotFoundError: no such file.
        InvalidValueError: no sequences, unequal lengths or letters outside :data:`ALPHABET`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sequence file not found: {path}")
    text = path.read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InvalidValueError(f"{path} holds no sequences")
    seqs: list[str] = []
    scores: list[float] = []
    if lines[0].startswith(">"):  # FASTA: a header, then the sequence over one or more lines
        current: list[str] = []
        for ln in lines + [">"]:
            if ln.startswith(">"):
                if current:
                    seqs.append("".join(current).upper())
                    scores.append(float("nan"))
                current = []
            else:
                current.append(ln)
    elif "sequence" in [f.strip().lower() for f in next(csv.reader([lines[0]]))]:
        reader = csv.reader(lines)
        header = [f.strip().lower() for f in next(reader)]
        col, score_col = header.index("sequence"), header.index("score") if "score" in header else None
        for k, row in enumerate(reader, start=2):
            if col >= len(row) or not row[col].strip():
                raise InvalidValueError(f"{path}: row {k} has no sequence")
            seqs.append(row[col].strip().upper())
            raw = row[score_col].strip() if score_col is not None and score_col < len(row) else ""
            try:
                scores.append(float(raw) if raw else float("nan"))
            except ValueError:
                raise InvalidValueError(f"{path}: score {raw!r} of {seqs[-1]!r} is not a number") from None
    else:
        seqs = [ln.upper() for ln in lines]
        scores = [float("nan")] * len(seqs)
    if not seqs:
        raise InvalidValueError(f"{path} holds no sequences")
    try:
        encode(seqs)  # validates lengths and letters
    except InvalidValueError as err:
        raise InvalidValueError(f"{path}: {err}") from None
    return deduplicate(seqs, np.asarray(scores), path.name)


@functools.lru_cache(maxsize=4)
def _load_file(name: str) -> SequenceSet:
    path = data_dir() / name
    if not path.is_file():
        raise InvalidValueError(f"the AAV data file {path} is missing from this installation")
    return read_sequences(path)


def load_task(task: str) -> SequenceSet:
    """The training file of a design task (``"medium"`` or ``"hard"``), deduplicated.

    Raises:
        InvalidValueError: an unknown task.
    """
    if task not in TASKS:
        raise InvalidValueError(f"unknown AAV task {task!r}; choose one of {', '.join(TASKS)}")
    data = _load_file(TASKS[task])
    return SequenceSet(data.sequences, data.scores.copy(), task)


def load_ground_truth() -> SequenceSet:
    """All 42,340 distinct labelled AAV sequences (the oracle's data; never the predictor's)."""
    data = _load_file("aav_ground_truth.csv")
    return SequenceSet(data.sequences, data.scores.copy(), "ground_truth")
