"""What the protein-design field reports (GGS's evaluation): fitness, diversity and novelty of a design set.

- **fitness**: the oracle's score normalised by the ground truth's range
  (:func:`~energyflow.domains.protein.data.normalise`); the table reports the median;
- **diversity**: the **mean** pairwise Levenshtein distance among the designs, which is
  what GGS's code computes (its paper says median; :func:`diversity` returns both);
- **novelty**: per design, the Levenshtein distance to its nearest sequence of the task's
  training file; the table reports the median.

Distances come from ``rapidfuzz`` (MIT; C++ Levenshtein, the ``protein`` extra).

Example:
    >>> levenshtein_matrix(["AAAA", "AAAC"], ["AAAA", "CCCC", "AACC"]).tolist()
    [[0, 4, 2], [1, 3, 1]]
    >>> diversity(["AAAA", "AAAC", "CCCC"])
    {'mean': 2.6666666666666665, 'median': 3.0}
    >>> novelty(["AAAC", "CCCC"], ["AAAA", "AACC"]).tolist()
    [1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from energyflow.domains.protein.data import normalise
from energyflow.errors import InvalidValueError

__all__ = ["design_metrics", "diversity", "levenshtein_matrix", "mean_pairwise", "novelty"]


def _rapidfuzz() -> Any:
    try:
        from rapidfuzz import distance, process
    except ImportError as err:  # pragma: no cover - the protein extra is installed wherever this runs
        raise InvalidValueError("the protein metrics need rapidfuzz: pip install 'energyflow-em[protein]'") from err
    return distance, process


def levenshtein_matrix(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """``(len(a), len(b))`` int32 Levenshtein distances (unit insertions, deletions, substitutions)."""
    distance, process = _rapidfuzz()
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.int32)
    return process.cdist(list(a), list(b), scorer=distance.Levenshtein.distance, dtype=np.int32, workers=1)


def diversity(sequences: Sequence[str]) -> dict[str, float]:
    """Mean (GGS's code) and median (GGS's paper) of the pairwise distances among distinct pairs ``i != j``.

    GGS divides the summed distances of ordered pairs ``i != j`` by ``n (n - 1)``; for
    fewer than two sequences both are 0.
    """
    seqs = list(sequences)
    if len(seqs) < 2:
        return {"mean": 0.0, "median": 0.0}
    d = levenshtein_matrix(seqs, seqs).astype(np.float64)
    iu = np.triu_indices(len(seqs), 1)
    return {"mean": mean_pairwise(d), "median": float(np.median(d[iu]))}


def mean_pairwise(dist: np.ndarray) -> float:
    """The mean off-diagonal entry of a symmetric ``(n, n)`` distance matrix (0 for ``n < 2``): GGS's diversity."""
    n = len(dist)
    return float(np.asarray(dist, dtype=np.float64).sum() / (n * (n - 1))) if n > 1 else 0.0


def novelty(sequences: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """``(len(sequences),)`` distance of each sequence to its nearest reference sequence."""
    if len(reference) == 0:
        raise InvalidValueError("novelty needs at least one reference sequence")
    return levenshtein_matrix(sequences, reference).min(axis=1) if len(sequences) else np.zeros(0, np.int32)


def design_metrics(sequences: Sequence[str], oracle_scores: np.ndarray, reference: Sequence[str]) -> dict[str, float]:
    """The GGS table of one design set.

    Args:
        sequences: the selected designs (distinct).
        oracle_scores: ``(n,)`` the oracle's raw scores of them.
        reference: the task's training sequences (novelty is measured against them).

    Returns:
        dict: ``n``, ``median_fitness``, ``mean_fitness``, ``max_fitness`` (normalised),
        ``diversity`` (mean pairwise distance), ``median_diversity``, ``novelty``
        (median distance to the training file) and ``mean_novelty``.
    """
    seqs = list(sequences)
    if len(set(seqs)) != len(seqs):
        raise InvalidValueError("design_metrics takes distinct sequences (deduplicate first, as GGS does)")
    scores = np.asarray(oracle_scores, dtype=np.float64)
    if scores.shape != (len(seqs),):
        raise InvalidValueError(f"need one oracle score per sequence: {len(seqs)} sequences, scores {scores.shape}")
    if not seqs:
        raise InvalidValueError("design_metrics needs at least one sequence")
    fit = normalise(scores)
    div = diversity(seqs)
    nov = novelty(seqs, reference).astype(np.float64)
    return {"n": float(len(seqs)), "median_fitness": float(np.median(fit)), "mean_fitness": float(fit.mean()),
            "max_fitness": float(fit.max()), "diversity": div["mean"], "median_diversity": div["median"],
            "novelty": float(np.median(nov)), "mean_novelty": float(nov.mean())}
