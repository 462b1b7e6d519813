"""AAV data, GGS's metrics and the cached models, against hand-computed and independent answers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytest.importorskip("rapidfuzz")

from energyflow.domains.protein import data as D  # noqa: E402
from energyflow.domains.protein import models as M  # noqa: E402
from energyflow.domains.protein.metrics import design_metrics, diversity, levenshtein_matrix, novelty  # noqa: E402
from energyflow.errors import InvalidValueError  # noqa: E402


def test_the_shipped_files_deduplicate_to_the_documented_counts():
    medium, hard, gt = D.load_task("medium"), D.load_task("hard"), D.load_ground_truth()
    assert (len(medium), len(hard), len(gt)) == (2111, 3347, 42340)
    assert {len(s) for s in gt.sequences} == {28}
    truth = set(gt.sequences)
    assert set(medium.sequences) <= truth and set(hard.sequences) <= truth
    assert np.isclose(gt.scores.min(), D.FITNESS_MIN) and np.isclose(gt.scores.max(), D.FITNESS_MAX)
    with pytest.raises(InvalidValueError, match="easy"):
        D.load_task("easy")


def test_deduplicate_averages_repeats_in_first_appearance_order():
    s = D.deduplicate(["CC", "AA", "CC", "DD", "DD"], np.array([1.0, 2.0, 3.0, np.nan, np.nan]))
    assert s.sequences == ("CC", "AA", "DD")
    assert s.scores[:2].tolist() == [2.0, 2.0] and np.isnan(s.scores[2])


def test_tokens_round_trip_and_bad_letters_are_named():
    seqs = ["ARNDCQEGHILKMFPSTWYV" + "AAAAAAAA", "W" * 28]
    assert D.decode(D.encode(seqs)) == seqs
    assert D.encode(["ARN"]).tolist() == [[0, 1, 2]]  # GGS's alphabet order
    with pytest.raises(InvalidValueError, match="'X'"):
        D.encode(["AXA"])
    with pytest.raises(InvalidValueError, match="length"):
        D.encode(["AA", "AAA"])
    with pytest.raises(InvalidValueError):
        D.decode(torch.tensor([[20]]))
    assert D.normalise([D.FITNESS_MIN, D.FITNESS_MAX]).tolist() == [0.0, 1.0]


def test_read_sequences_takes_csv_fasta_and_plain_text(tmp_path):
    (tmp_path / "a.csv").write_text("sequence,score\nAAAA,1.0\nCCCC,2\nAAAA,3\n")
    (tmp_path / "b.csv").write_text("id,sequence\n1,aaaa\n2,cccc\n")
    (tmp_path / "c.fasta").write_text(">x\nAA\nAA\n>y desc\nCCCC\n")
    (tmp_path / "d.txt").write_text("AAAA\n\nCCCC\n")
    a = D.read_sequences(tmp_path / "a.csv")
    assert a.sequences == ("AAAA", "CCCC") and a.scores.tolist() == [2.0, 2.0]
    for name in ("b.csv", "c.fasta", "d.txt"):
        assert D.read_sequences(tmp_path / name).sequences == ("AAAA", "CCCC"), name
    with pytest.raises(FileNotFoundError):
        D.read_sequences(tmp_path / "missing.csv")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(InvalidValueError, match="no sequences"):
        D.read_sequences(tmp_path / "e.txt")


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_levenshtein_matches_an_independent_dynamic_programme():
    rng = random.Random(0)
    a = ["".join(rng.choice("ACDE") for _ in range(rng.randint(0, 9))) for _ in range(12)]
    b = ["".join(rng.choice("ACDE") for _ in range(rng.randint(1, 9))) for _ in range(10)]
    expected = [[_levenshtein(x, y) for y in b] for x in a]
    assert levenshtein_matrix(a, b).tolist() == expected


def test_diversity_is_ggs_mean_over_ordered_pairs_and_novelty_the_nearest_distance():
    seqs = ["AAAA", "AAAC", "CCCC", "ACCC"]
    d = [[_levenshtein(x, y) for y in seqs] for x in seqs]
    ggs = sum(d[i][j] for i in range(4) for j in range(4) if i != j) / (4 * 3)  # GGS's diversity()
    pairs = sorted(d[i][j] for i in range(4) for j in range(i + 1, 4))  # 1, 4, 3, 3, 2, 1
    assert diversity(seqs) == {"mean": ggs, "median": float(np.median(pairs))}
    assert diversity(["AAAA"]) == {"mean": 0.0, "median": 0.0}
    assert novelty(["AAAC", "CCCA"], ["AAAA", "CCCC"]).tolist() == [1, 1]


def test_design_metrics_normalise_the_oracle_and_refuse_bad_input():
    seqs, ref = ["AAAA", "AAAC", "CCCC"], ["AAAA"]
    scores = np.array([0.0, 0.5, 1.0]) * D.FITNESS_MAX
    m = design_metrics(seqs, scores, ref)
    assert m["median_fitness"] == pytest.approx(0.5) and m["max_fitness"] == pytest.approx(1.0)
    assert m["novelty"] == 1.0 and m["n"] == 3
    with pytest.raises(InvalidValueError, match="distinct"):
        design_metrics(["AAAA", "AAAA"], np.zeros(2), ref)
    with pytest.raises(InvalidValueError, match="one oracle score"):
        design_metrics(seqs, np.zeros(2), ref)


def test_fitness_cnn_reads_tokens_and_probabilities_alike():
    torch.manual_seed(0)
    cnn = M.FitnessCNN(channels=8, hidden=8, mean=2.0, std=3.0)
    tokens = torch.randint(20, (4, 28), generator=torch.Generator().manual_seed(1))
    onehot = torch.nn.functional.one_hot(tokens, 20).float()
    assert torch.allclose(cnn(tokens), cnn(onehot))
    assert torch.allclose(cnn(tokens), 2.0 + 3.0 * cnn.standardised(tokens))
    with pytest.raises(InvalidValueError):
        cnn(torch.zeros(4, 3, 20))
    with pytest.raises(InvalidValueError, match="multiple of 4"):
        M.SequenceVAE(seq_len=30)


def test_the_predictor_cache_reloads_retrains_on_a_new_recipe_and_survives_a_corrupt_file(tmp_path, monkeypatch):
    gt = D.load_ground_truth()
    small = D.SequenceSet(gt.sequences[-300:], gt.scores[-300:], "ground truth tail")
    monkeypatch.setattr(M, "_outside", lambda task: small)  # score on 300 sequences, not 40,000: seconds, not minutes
    first = M.train_predictor("medium", steps=2, batch_size=8, cache_dir=tmp_path)
    (path,) = tmp_path.glob("aav-predictor-medium-*.pt")

    def boom(*a, **k):
        raise AssertionError("retrained a cached model")

    with monkeypatch.context() as mp:
        mp.setattr(M, "_fit_cnn", boom)
        again = M.train_predictor("medium", steps=2, batch_size=8, cache_dir=tmp_path)
    assert again.metrics == first.metrics and first.metrics["n_outside"] == 300
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    path.write_bytes(b"not a checkpoint")
    M.train_predictor("medium", steps=2, batch_size=8, cache_dir=tmp_path)  # retrained, not fatal
    M.train_predictor("medium", steps=3, batch_size=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("aav-predictor-medium-*.pt"))) == 2
    with pytest.raises(InvalidValueError, match="unknown option"):
        M.train_predictor("medium", epochs=3, cache=False)
    with pytest.raises(InvalidValueError, match="steps"):
        M.train_predictor("medium", steps=0, cache=False)
