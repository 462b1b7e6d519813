"""AAV data: the shipped files against an independent reading, deduplication, tokens, fitness, user files."""

from __future__ import annotations

import csv
import math
import random
from collections import OrderedDict

import numpy as np
import pytest
import torch

from energyflow.domains.protein import data as D
from energyflow.errors import InvalidValueError

# (file, raw rows, distinct sequences): the counts the module's docstring promises.
SHIPPED = {"medium": ("aav_medium.csv", 2145, 2111), "hard": ("aav_hard.csv", 3453, 3347),
           "ground_truth": ("aav_ground_truth.csv", 44128, 42340)}


def _independent_read(name: str) -> tuple[int, list[str], list[float]]:
    """Raw row count, distinct sequences in first-appearance order and the mean of each one's scores."""
    groups: OrderedDict[str, list[float]] = OrderedDict()
    rows = 0
    with open(D.data_dir() / name, newline="") as f:
        for row in csv.DictReader(f):
            rows += 1
            groups.setdefault(row["sequence"], []).append(float(row["score"]))
    return rows, list(groups), [math.fsum(v) / len(v) for v in groups.values()]


@pytest.fixture(scope="module")
def shipped() -> dict[str, D.SequenceSet]:
    return {"medium": D.load_task("medium"), "hard": D.load_task("hard"),
            "ground_truth": D.load_ground_truth()}


@pytest.mark.parametrize("which", list(SHIPPED))
def test_shipped_files_deduplicate_to_the_documented_counts_and_means(shipped, which):
    name, raw_rows, distinct = SHIPPED[which]
    rows, seqs, means = _independent_read(name)
    assert rows == raw_rows
    got = shipped[which]
    assert len(got) == len(got.sequences) == len(got.scores) == distinct
    assert got.sequences == tuple(seqs)  # same sequences, same first-appearance order
    # bincount's sum / count against math.fsum / count: scores are <= 20 and at most a few
    # repeats, so the two differ by a few ulps (~1e-15); 1e-12 is far below any real difference.
    np.testing.assert_allclose(got.scores, means, rtol=0, atol=1e-12)
    assert {len(s) for s in got.sequences} == {D.SEQ_LEN} == {28}
    assert got.scores.dtype == np.float64 and not np.isnan(got.scores).any()
    assert got.name == which


def test_every_task_sequence_is_in_the_ground_truth_and_the_range_is_the_ground_truths(shipped):
    truth = set(shipped["ground_truth"].sequences)
    for task in ("medium", "hard"):
        assert set(shipped[task].sequences) <= truth, task
    gt = shipped["ground_truth"].scores
    # FITNESS_MAX is the file's largest score as printed (11 decimals).
    assert gt.min() == D.FITNESS_MIN and gt.max() == pytest.approx(D.FITNESS_MAX, abs=1e-10)


def test_load_task_hands_out_copies_and_refuses_an_unknown_task():
    a = D.load_task("medium")
    first = float(a.scores[0])
    a.scores[0] = -123.0
    assert D.load_task("medium").scores[0] == first  # the cached file was not mutated
    with pytest.raises(InvalidValueError, match=r"'easy'.*medium, hard"):
        D.load_task("easy")
    with pytest.raises(InvalidValueError):
        D.load_task("ground_truth")  # the oracle's data is not a design task


def test_deduplicate_averages_repeats_ignoring_nan_in_first_appearance_order():
    seqs = ["CC", "AA", "CC", "DD", "AA", "EE", "EE", "CC"]
    scores = [1.0, 2.0, 3.0, np.nan, np.nan, np.nan, 4.0, 5.0]
    s = D.deduplicate(seqs, np.array(scores), "hand")
    assert s.sequences == ("CC", "AA", "DD", "EE") and s.name == "hand"
    # CC: (1 + 3 + 5) / 3; AA: 2 (its NaN is not a score); DD: only NaN -> NaN; EE: (NaN, 4) -> 4.
    assert s.scores[[0, 1, 3]].tolist() == [3.0, 2.0, 4.0]
    assert np.isnan(s.scores[2])
    empty = D.deduplicate([], np.zeros(0))
    assert len(empty) == 0 and empty.scores.shape == (0,)


def test_encode_uses_the_alphabets_order_and_round_trips():
    assert D.encode(list(D.ALPHABET)).flatten().tolist() == list(range(20))  # token k is ALPHABET[k]
    assert D.encode("ARN").tolist() == [[0, 1, 2]]  # a lone string is one sequence
    rng = random.Random(0)
    seqs = ["".join(rng.choice(D.ALPHABET) for _ in range(28)) for _ in range(50)]
    tokens = D.encode(seqs)
    assert tokens.dtype == torch.int64 and tokens.shape == (50, 28)
    assert D.decode(tokens) == seqs
    assert torch.equal(D.SequenceSet(tuple(seqs), np.zeros(50)).tokens(), tokens)
    random_tokens = torch.randint(20, (7, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(D.encode(D.decode(random_tokens)), random_tokens)


def test_encode_refuses_unequal_lengths_letters_outside_the_alphabet_and_nothing():
    with pytest.raises(InvalidValueError, match=r"sequence 1 .*length 3"):
        D.encode(["AAA", "AAAA"])
    for bad, letter in (("AXA", "'X'"), ("AAb", "'b'"), ("BAA", "'B'"), ("A-A", "'-'")):
        with pytest.raises(InvalidValueError, match=letter):
            D.encode(["AAA", bad])
    with pytest.raises(InvalidValueError):
        D.encode([])


@pytest.mark.parametrize("tokens", [torch.tensor([[20]]), torch.tensor([[0, -1]]), torch.tensor([[0.0, 1.0]]),
                                    torch.tensor([0, 1])], ids=["20", "-1", "float", "1-D"])
def test_decode_refuses_out_of_range_tokens_and_wrong_tensors(tokens):
    with pytest.raises(InvalidValueError):
        D.decode(tokens)


def test_normalise_maps_the_ground_truth_range_to_the_unit_interval():
    out = D.normalise([D.FITNESS_MIN, D.FITNESS_MAX, (D.FITNESS_MIN + D.FITNESS_MAX) / 2])
    assert out.dtype == np.float64 and out.tolist() == [0.0, 1.0, 0.5]
    assert D.normalise(torch.tensor([D.FITNESS_MAX], dtype=torch.float64)).tolist() == [1.0]
    assert float(D.normalise(9.768228335305)) == pytest.approx(0.5, abs=1e-12)


def test_read_sequences_reads_csv_with_and_without_scores(tmp_path):
    (tmp_path / "scored.csv").write_text("sequence,score\nAAAA,1.0\nCCCC,2\nAAAA,3\nDDDD,\n")
    s = D.read_sequences(tmp_path / "scored.csv")
    assert s.sequences == ("AAAA", "CCCC", "DDDD") and s.name == "scored.csv"
    assert s.scores[:2].tolist() == [2.0, 2.0] and np.isnan(s.scores[2])  # repeats averaged, blank -> NaN
    (tmp_path / "caps.csv").write_text("Score,Sequence\n4.5,wwww\n")
    c = D.read_sequences(tmp_path / "caps.csv")
    assert c.sequences == ("WWWW",) and c.scores.tolist() == [4.5]  # any column order, any case
    (tmp_path / "plain.csv").write_text("id,sequence\n1,aaaa\n2,cccc\n3,aaaa\n")
    p = D.read_sequences(tmp_path / "plain.csv")
    assert p.sequences == ("AAAA", "CCCC") and np.isnan(p.scores).all()
    (tmp_path / "bad.csv").write_text("sequence,score\nAAAA,high\n")
    with pytest.raises(InvalidValueError, match="'high'"):
        D.read_sequences(tmp_path / "bad.csv")
    (tmp_path / "header.csv").write_text("sequence,score\n")
    with pytest.raises(InvalidValueError, match="no sequences"):
        D.read_sequences(tmp_path / "header.csv")


def test_read_sequences_reads_multiline_fasta_and_plain_text(tmp_path):
    (tmp_path / "a.fasta").write_text(">first design\nARND\ncqeg\n\n>second\nHILKMFPS\n>third\nARNDCQEG\n")
    f = D.read_sequences(tmp_path / "a.fasta")
    assert f.sequences == ("ARNDCQEG", "HILKMFPS") and np.isnan(f.scores).all()  # lines joined, repeat merged
    (tmp_path / "b.txt").write_bytes(b"arnd\r\n\r\nCQEG\r\n  HILK  \n")
    assert D.read_sequences(tmp_path / "b.txt").sequences == ("ARND", "CQEG", "HILK")
    (tmp_path / "headers.fasta").write_text(">a\n>b\n")
    with pytest.raises(InvalidValueError, match="no sequences"):
        D.read_sequences(tmp_path / "headers.fasta")


def test_read_sequences_refuses_missing_empty_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.read_sequences(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError):
        D.read_sequences(tmp_path)  # a folder is not a sequence file
    for text in ("", "\n  \n\n"):
        (tmp_path / "empty.txt").write_text(text)
        with pytest.raises(InvalidValueError, match="no sequences"):
            D.read_sequences(tmp_path / "empty.txt")
    (tmp_path / "letter.txt").write_text("AAAA\nAAZA\n")
    with pytest.raises(InvalidValueError, match=r"letter\.txt.*'Z'"):
        D.read_sequences(tmp_path / "letter.txt")
    (tmp_path / "lengths.txt").write_text("AAAA\nAAA\n")
    with pytest.raises(InvalidValueError, match="length"):
        D.read_sequences(tmp_path / "lengths.txt")


def test_read_sequences_refuses_a_csv_row_without_a_sequence(tmp_path):
    (tmp_path / "short.csv").write_text("score,sequence\n1.0,AAAA\n2.0\n")
    with pytest.raises(InvalidValueError):
        D.read_sequences(tmp_path / "short.csv")


def test_csv_headers_with_spaces_or_quotes_keep_their_scores(tmp_path):
    (tmp_path / "spaced.csv").write_text("sequence, score\nAAAA, 1.5\n")
    (tmp_path / "quoted.csv").write_text('"sequence","score"\n"AAAA","2.5"\n')
    assert D.read_sequences(tmp_path / "spaced.csv").scores.tolist() == [1.5]
    assert D.read_sequences(tmp_path / "quoted.csv").scores.tolist() == [2.5]
