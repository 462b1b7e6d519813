"""GGS's design metrics: Levenshtein against an independent dynamic programme, diversity, novelty, table."""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

pytest.importorskip("rapidfuzz")

from energyflow.domains.protein.data import ALPHABET, FITNESS_MAX, FITNESS_MIN  # noqa: E402
from energyflow.domains.protein.metrics import (  # noqa: E402
    design_metrics,
    diversity,
    levenshtein_matrix,
    novelty,
)
from energyflow.errors import InvalidValueError  # noqa: E402


def _levenshtein(a: str, b: str) -> int:
    """Wagner-Fischer: unit insertions, deletions and substitutions."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_the_reference_dynamic_programme_on_textbook_cases():
    # The reference must be right for the comparison below to mean anything.
    assert _levenshtein("kitten", "sitting") == 3
    assert _levenshtein("", "ABC") == 3 and _levenshtein("ABC", "") == 3
    assert _levenshtein("ARND", "ARND") == 0 and _levenshtein("ARND", "RNDA") == 2


def test_levenshtein_matrix_matches_an_independent_dynamic_programme():
    rng = random.Random(0)

    def draw(letters: str) -> str:
        return "".join(rng.choice(letters) for _ in range(rng.randint(0, 30)))

    # Small alphabets make long shared runs (insertions/deletions pay); the full one makes substitutions.
    a = [draw(rng.choice(["AC", "ARND", ALPHABET])) for _ in range(30)]
    b = [draw(rng.choice(["AC", "ARND", ALPHABET])) for _ in range(30)]
    got = levenshtein_matrix(a, b)
    assert got.shape == (30, 30) and got.dtype == np.int32
    assert got.tolist() == [[_levenshtein(x, y) for y in b] for x in a]
    # Symmetric: the 30 pairs (a[i], b[i]) measured the other way round.
    swapped = [int(levenshtein_matrix([y], [x])[0, 0]) for x, y in zip(a, b)]
    assert swapped == [int(got[i, i]) for i in range(30)]


def test_levenshtein_matrix_of_an_empty_side_is_empty():
    assert levenshtein_matrix([], ["AAAA", "CC"]).shape == (0, 2)
    assert levenshtein_matrix(["AAAA"], []).shape == (1, 0)


def test_diversity_is_ggs_mean_over_ordered_pairs_and_the_median_over_pairs():
    seqs = ["AAAA", "AAAC", "CCCC", "ACCC"]
    # By hand: AAAA-AAAC 1, AAAA-CCCC 4, AAAA-ACCC 3, AAAC-CCCC 3, AAAC-ACCC 2, CCCC-ACCC 1.
    pairs = [1, 4, 3, 3, 2, 1]
    # GGS: 2 * 14 ordered-pair distances / (4 * 3) = 28 / 12; the median of 1, 1, 2, 3, 3, 4 is 2.5.
    assert diversity(seqs) == {"mean": 2 * sum(pairs) / (4 * 3), "median": 2.5}
    # Unequal lengths and a repeated sequence (a distinct index pair at distance 0), against GGS's formula.
    seqs = ["AAAA", "AC", "CCCCCC", "AC", "ARNDCQ"]
    n = len(seqs)
    d = [[_levenshtein(x, y) for y in seqs] for x in seqs]
    ggs = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    median = statistics.median(d[i][j] for i in range(n) for j in range(i + 1, n))
    # 1e-12: two float sums of at most 20 small integers, divided by 20 and by 10.
    assert diversity(seqs) == {"mean": pytest.approx(ggs, abs=1e-12), "median": median}
    assert diversity(["AAAA", "AAAA", "CCCC"]) == {"mean": 8 / 3, "median": 4.0}  # pairs 0, 4, 4


@pytest.mark.parametrize("seqs", [[], ["ARND"]])
def test_diversity_of_fewer_than_two_is_zero(seqs):
    assert diversity(seqs) == {"mean": 0.0, "median": 0.0}


def test_novelty_is_the_distance_to_the_nearest_reference():
    reference = ["AAAA", "CCCC", "AACC"]
    # AAAC: 1 from AAAA; CCCA: 1 from CCCC; ACCA: 2 from AAAA/CCCC/AACC; AACC: 0 (in the reference);
    # DDDD: 4 from all; AA: 2 from AAAA or AACC.
    designs = ["AAAC", "CCCA", "ACCA", "AACC", "DDDD", "AA"]
    assert novelty(designs, reference).tolist() == [1, 1, 2, 0, 4, 2]
    nearest = [min(_levenshtein(s, r) for r in reference) for s in designs]
    assert novelty(designs, reference).tolist() == nearest
    assert novelty([], reference).shape == (0,)
    with pytest.raises(InvalidValueError, match="reference"):
        novelty(designs, [])


def test_design_metrics_computes_the_ggs_table_by_hand():
    seqs = ["AAAA", "AAAC", "CCCC", "ACCC"]
    reference = ["AAAA", "CCCA"]
    span = FITNESS_MAX - FITNESS_MIN
    fractions = [0.1, 0.9, 0.4, 0.3]  # normalised fitness; an even count so the median averages 0.3 and 0.4
    raw = np.array([FITNESS_MIN + f * span for f in fractions])
    m = design_metrics(seqs, raw, reference)
    # novelty by hand: AAAA 0, AAAC 1 (AAAA), CCCC 1 (CCCA), ACCC 2 (AAAA and CCCA).
    expected = {"n": 4.0, "median_fitness": 0.35, "mean_fitness": 0.425, "max_fitness": 0.9,
                "diversity": 28 / 12, "median_diversity": 2.5, "novelty": 1.0, "mean_novelty": 1.0}
    assert set(m) == set(expected)
    # abs 1e-12: the fractions go through one multiply-add and its inverse in float64 (error ~1e-16).
    assert m == {k: pytest.approx(v, abs=1e-12) for k, v in expected.items()}
    single = design_metrics(["CCCC"], np.array([FITNESS_MAX]), reference)
    assert single["median_fitness"] == single["max_fitness"] == pytest.approx(1.0, abs=1e-12)
    assert single["diversity"] == 0.0 and single["novelty"] == 1.0


def test_design_metrics_refuses_duplicates_mismatched_scores_and_nothing():
    with pytest.raises(InvalidValueError, match="distinct"):
        design_metrics(["AAAA", "CCCC", "AAAA"], np.zeros(3), ["AAAA"])
    for scores in (np.zeros(2), np.zeros(4), np.zeros((3, 1))):
        with pytest.raises(InvalidValueError, match="one oracle score per sequence"):
            design_metrics(["AAAA", "CCCC", "DDDD"], scores, ["AAAA"])
    with pytest.raises(InvalidValueError):
        design_metrics([], np.zeros(0), ["AAAA"])
