"""GGS's graph smoothing: the single-substitution neighbourhood, the Hamming kNN graph, the
Tikhonov solve against a dense one, and the cached smoothed predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from energyflow.domains.protein import data as D
from energyflow.domains.protein import models as M
from energyflow.domains.protein import smoothing as S
from energyflow.errors import InvalidValueError

pytest.importorskip("scipy.sparse")


def _distinct(n: int, length: int, seed: int) -> torch.Tensor:
    t = torch.randint(20, (3 * n, length), generator=torch.Generator().manual_seed(seed))
    return torch.unique(t, dim=0)[:n]


def _hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, None, :] != b[None, :, :]).sum(-1)


def test_single_mutants_start_with_the_given_sequences_and_add_distinct_one_edit_neighbours():
    base = _distinct(30, 12, seed=0)
    out = S.single_mutants(base, 500, torch.Generator().manual_seed(1))
    assert out.shape == (500, 12) and out.dtype == torch.int64
    assert torch.equal(out[:30], base)
    assert len(torch.unique(out, dim=0)) == 500
    # Every added row is one substitution away from some given row (its parent).
    assert (_hamming(out[30:], base).min(1).values == 1).all()


def test_single_mutants_are_reproducible_and_seed_dependent():
    base = _distinct(20, 10, seed=2)
    a = S.single_mutants(base, 300, torch.Generator().manual_seed(5))
    b = S.single_mutants(base, 300, torch.Generator().manual_seed(5))
    c = S.single_mutants(base, 300, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_single_mutants_stop_when_the_neighbourhood_is_exhausted():
    # One sequence of length 2 has exactly 2 * 19 single substitutions: 39 sequences in all.
    base = torch.tensor([[0, 0]])
    out = S.single_mutants(base, 1000, torch.Generator().manual_seed(0))
    assert len(out) == 39 and len(torch.unique(out, dim=0)) == 39


def test_single_mutants_refuse_repeated_input():
    with pytest.raises(InvalidValueError, match="repeat"):
        S.single_mutants(torch.tensor([[1, 2], [1, 2]]), 10, torch.Generator())


def test_knn_graph_keeps_each_nodes_k_nearest_hamming_distances_symmetrically():
    tokens = _distinct(60, 8, seed=3)
    k = 5
    w = S.knn_graph(tokens, k, chunk=17)  # a chunk that does not divide 60: the blocks' edges
    dense = w.toarray()
    ham = _hamming(tokens, tokens).double().numpy()
    assert np.allclose(dense, dense.T) and np.all(np.diag(dense) == 0)
    for i in range(60):
        others = np.sort(np.delete(ham[i], i))
        # A kept edge carries the Hamming distance; i's k nearest distances are among its edges
        # (ties at the k-th distance make the exact neighbours ambiguous, not their distances).
        nz = np.flatnonzero(dense[i])
        assert np.array_equal(dense[i, nz], ham[i, nz])
        assert np.all(dense[i, nz] >= others[0])
        assert (dense[i] > 0).sum() >= k
        assert np.sum(dense[i][dense[i] > 0] <= others[k - 1]) >= k
    with pytest.raises(InvalidValueError, match="k must"):
        S.knn_graph(tokens, 60)


def test_tikhonov_smooth_matches_a_dense_solve_and_keeps_the_laplacians_null_vector():
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, (30, 30)) * (rng.uniform(size=(30, 30)) < 0.3)
    a = np.triu(a, 1)
    a = a + a.T
    a[0, 1] = a[1, 0] = 1.0  # no isolated node
    a[np.arange(29), np.arange(1, 30)] = a[np.arange(1, 30), np.arange(29)] = 1.0
    deg = a.sum(1)
    lap = np.eye(30) - a / np.sqrt(deg[:, None] * deg[None, :])  # I - D^-1/2 W D^-1/2, by hand
    s = rng.normal(size=30)
    y = S.tikhonov_smooth(csr_matrix(a), s, gamma=2.0)
    # CG to a relative residual of 1e-8 on a matrix with condition number <= 5: 1e-7 is loose.
    np.testing.assert_allclose(y, np.linalg.solve(np.eye(30) + 2.0 * lap, s), rtol=0, atol=1e-7)
    # sqrt(degree) spans L's null space: smoothing leaves it where it is.
    np.testing.assert_allclose(S.tikhonov_smooth(csr_matrix(a), np.sqrt(deg), gamma=2.0), np.sqrt(deg), atol=1e-7)
    # ... and it damps the rest: the smoothed scores vary less along the edges.
    rough = lambda v: float(v @ lap @ v)  # noqa: E731
    assert rough(y) < rough(s)
    with pytest.raises(InvalidValueError, match="gamma"):
        S.tikhonov_smooth(csr_matrix(a), s, gamma=0.0)


def test_train_smoothed_predictor_caches_and_reports_both_predictors(tmp_path, monkeypatch):
    # A tiny recipe on a small "outside" set: the pipeline's wiring, not its quality.
    medium = D.load_task("medium")
    out = M._outside(medium)
    small = D.SequenceSet(out.sequences[:300], out.scores[:300], "small outside")
    monkeypatch.setattr(M, "_outside", lambda task: small)
    model = S.train_smoothed_predictor("medium", cache_dir=tmp_path, base_options={"steps": 3}, nodes=2600, k=10,
                                       steps=3, batch_size=32)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("aav-predictor-medium-") and files[1].startswith("aav-smoothed-medium-")
    assert model.metrics["nodes"] == 2600 and model.metrics["k"] == 10
    assert model.metrics["edges"] >= 2600 * 10 // 2
    assert set(model.metrics["plain"]) >= {"spearman_outside", "spearman_top"}
    assert -1 <= model.metrics["spearman_outside"] <= 1
    # The second call loads it (training again would call _fit_cnn).
    monkeypatch.setattr(M, "_fit_cnn", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = S.train_smoothed_predictor("medium", cache_dir=tmp_path, base_options={"steps": 3}, nodes=2600, k=10,
                                       steps=3, batch_size=32)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    with pytest.raises(InvalidValueError, match="nodes must exceed"):
        S.train_smoothed_predictor("medium", cache=False, base_options={"steps": 3}, nodes=100)
    with pytest.raises(InvalidValueError, match="unknown option"):
        S.train_smoothed_predictor("medium", cache=False, base_options={"steps": 3}, gama=1.0)


def test_predictors_registry_names_the_three_kinds():
    assert S.PREDICTORS.names() == ["blend", "plain", "smoothed"]


def test_the_registry_passes_the_plain_recipe_to_both_and_the_smoothing_recipe_to_the_smoothed(monkeypatch):
    calls = []
    monkeypatch.setattr(M, "train_predictor", lambda task, **kw: calls.append(("plain", task, kw)))
    monkeypatch.setattr(S, "train_smoothed_predictor", lambda task, **kw: calls.append(("smoothed", task, kw)))
    S.PREDICTORS.get("plain")("hard", plain={"steps": 7}, smoothing={"nodes": 9})
    S.PREDICTORS.get("smoothed")("hard", plain={"steps": 7}, smoothing={"nodes": 9}, cache=False)
    assert calls == [("plain", "hard", {"steps": 7}),
                     ("smoothed", "hard", {"base_options": {"steps": 7}, "nodes": 9, "cache": False})]


def test_predictor_mean_averages_its_members_on_tokens_and_probabilities():
    torch.manual_seed(0)
    a, b = M.FitnessCNN(channels=8, hidden=16, mean=1.0), M.FitnessCNN(channels=8, hidden=16, std=2.0)
    mean = S.PredictorMean([a, b])
    tokens = torch.randint(20, (4, 28), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mean(tokens), (a(tokens) + b(tokens)) / 2)
    probs = torch.softmax(torch.randn(4, 28, 20), -1)
    torch.testing.assert_close(mean(probs), (a(probs) + b(probs)) / 2)
    with pytest.raises(InvalidValueError, match="at least one"):
        S.PredictorMean([])


def test_the_blend_is_the_mean_of_the_plain_and_the_smoothed_predictor(tmp_path, monkeypatch):
    medium = D.load_task("medium")
    out = M._outside(medium)
    monkeypatch.setattr(M, "_outside", lambda task: D.SequenceSet(out.sequences[:300], out.scores[:300], "small"))
    opts = dict(plain={"steps": 3}, smoothing={"nodes": 2600, "k": 10, "steps": 3, "batch_size": 32},
                cache_dir=tmp_path)
    blend = S.PREDICTORS.get("blend")("medium", **opts)
    plain, smooth = S.PREDICTORS.get("plain")("medium", **opts), S.PREDICTORS.get("smoothed")("medium", **opts)
    tokens = medium.tokens()[:50]
    torch.testing.assert_close(blend(tokens), (plain(tokens) + smooth(tokens)) / 2)
    assert set(blend.metrics) == {"spearman_outside", "mae_outside", "spearman_top", "n_train", "n_outside", "plain",
                                  "smoothed"}
    assert len(list(tmp_path.iterdir())) == 2  # the blend caches nothing of its own
