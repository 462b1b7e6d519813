"""Graph MMD kernels and MMD tables on hand-computed cases; the 1-D EMD against SciPy's Wasserstein."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from energyflow.domains.graph.data import load_graphs
from energyflow.domains.graph.metrics import (
    MMD_CONVENTIONS,
    clustering_histograms,
    degree_histograms,
    gaussian_emd_kernel,
    gaussian_kernel,
    gaussian_tv_kernel,
    mmd2,
    mmd_table,
    orbit_features,
    spectral_histograms,
)
from energyflow.errors import InvalidValueError


def test_degree_histograms_and_both_kernels_by_hand():
    path, triangle, empty = nx.path_graph(3), nx.cycle_graph(3), nx.empty_graph(2)
    p, q, e = degree_histograms([path, triangle, empty])
    assert p.tolist() == [0, 2, 1] and q.tolist() == [0, 0, 3] and e.tolist() == [2]
    # path vs triangle: p = (0, 2/3, 1/3), q = (0, 0, 1): EMD = |cumsum(p - q)|_1 = 2/3 = TV
    assert gaussian_emd_kernel(1.0)(p, q) == pytest.approx(math.exp(-(2 / 3) ** 2 / 2))
    assert gaussian_tv_kernel(1.0)(p, q) == pytest.approx(math.exp(-(2 / 3) ** 2 / 2))
    # empty vs triangle: all mass at degree 0 against degree 2: EMD 2, TV 1 (the kernels differ here)
    assert gaussian_emd_kernel(1.0)(e, q) == pytest.approx(math.exp(-2.0))
    assert gaussian_tv_kernel(1.0)(e, q) == pytest.approx(math.exp(-0.5))


def test_clustering_histogram_and_the_bin_scaled_emd():
    path, triangle = nx.path_graph(4), nx.complete_graph(3)
    a, b = clustering_histograms([path, triangle])
    assert a[0] == 4 and a.sum() == 4 and b[99] == 3 and b.sum() == 3  # 0 -> first bin, 1 -> last bin
    k = gaussian_emd_kernel(sigma=0.1, distance_scaling=100)(a, b)  # 99 bins apart, cost 0.99
    assert k == pytest.approx(math.exp(-0.99**2 / (2 * 0.01)))


def test_the_emd_equals_scipys_wasserstein_distance_on_random_histograms():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p, q = rng.random(rng.integers(2, 12)), rng.random(rng.integers(2, 12))
        n = max(len(p), len(q))
        reference = wasserstein_distance(np.arange(len(p)), np.arange(len(q)), p, q)
        k = gaussian_emd_kernel(sigma=1.0)(p, q)
        assert math.sqrt(-2 * math.log(k)) == pytest.approx(reference, rel=1e-9, abs=1e-12), n


def test_mmd2_by_hand_and_its_properties():
    p, q = degree_histograms([nx.path_graph(3), nx.cycle_graph(3)])
    kern = gaussian_emd_kernel(1.0)
    assert mmd2([p], [q], kern) == pytest.approx(2 - 2 * math.exp(-2 / 9))
    xs = degree_histograms([nx.path_graph(n) for n in range(3, 8)])
    ys = degree_histograms([nx.star_graph(n) for n in range(3, 8)])
    assert mmd2(xs, xs, kern) == pytest.approx(0.0, abs=1e-12)
    assert mmd2(xs, ys, kern) == pytest.approx(mmd2(ys, xs, kern))
    assert mmd2(xs, ys, kern) > 0.1  # control: paths and stars differ


def test_bad_input_is_refused():
    with pytest.raises(InvalidValueError, match="non-empty"):
        mmd2([], [np.ones(2)], gaussian_tv_kernel())
    with pytest.raises(InvalidValueError, match="sigma"):
        gaussian_emd_kernel(sigma=0.0)
    with pytest.raises(InvalidValueError, match="empty"):
        gaussian_tv_kernel()(np.zeros(3), np.ones(3))


def test_the_plain_gaussian_and_the_raw_tv_kernel_by_hand():
    x, y = np.array([0.0, 3.0]), np.array([4.0])  # y padded to (4, 0): difference (-4, 3)
    assert gaussian_kernel(sigma=30.0)(x, y) == pytest.approx(math.exp(-25 / 1800))
    assert gaussian_tv_kernel(sigma=30.0, normalise=False)(x, y) == pytest.approx(math.exp(-3.5**2 / 1800))
    # normalised, the same vectors are the pmfs (0, 1) and (1, 0): TV 1
    assert gaussian_tv_kernel(sigma=1.0)(x, y) == pytest.approx(math.exp(-0.5))


def test_the_gram_matrix_equals_the_pairwise_kernel_and_a_plain_function():
    rng = np.random.default_rng(2)
    xs = [rng.random(rng.integers(2, 9)) for _ in range(5)]
    ys = [rng.random(rng.integers(2, 9)) for _ in range(4)]
    for kern in (gaussian_emd_kernel(0.7, 3.0), gaussian_tv_kernel(0.4), gaussian_kernel(2.0)):
        gram = kern.gram(xs, ys)
        assert gram.shape == (5, 4)
        assert np.allclose(gram, [[kern(p, q) for q in ys] for p in xs], rtol=0, atol=1e-15)
        assert mmd2(xs, ys, kern) == pytest.approx(mmd2(xs, ys, lambda p, q, k=kern: k(p, q)), abs=1e-14)


def test_orbit_features_by_hand():
    # P4: ends (1, 1, 0, 0, 1, 0...) and inner nodes (2, 1, 1, 0, 0, 1, 0...), averaged
    f = orbit_features([nx.path_graph(4)])[0]
    assert f.shape == (15,) and f.tolist() == [1.5, 1.0, 0.5, 0.0, 0.5, 0.5] + [0.0] * 9
    star = orbit_features([nx.star_graph(3)])[0]  # centre (3, 0, 3, .., o7 1), leaves (1, 2, 0, .., o6 1)
    assert star[[0, 1, 2, 6, 7]].tolist() == [1.5, 1.5, 0.75, 0.75, 0.25]
    with pytest.raises(InvalidValueError, match="without nodes"):
        orbit_features([nx.Graph()])


def test_spectral_histograms_by_hand():
    # normalised Laplacian eigenvalues: K3 (0, 1.5, 1.5), P3 (0, 1, 2); bin width (2 + 1e-5) / 200
    k3, p3 = spectral_histograms([nx.complete_graph(3), nx.path_graph(3)])
    assert np.flatnonzero(k3).tolist() == [0, 150] and k3[150] == pytest.approx(2 / 3)
    assert np.flatnonzero(p3).tolist() == [0, 100, 199] and np.allclose(p3[[0, 100, 199]], 1 / 3)
    assert len(spectral_histograms([nx.cycle_graph(5)], bins=10)[0]) == 10
    for h in spectral_histograms(load_graphs("community_small", seed=0).test):
        assert h.shape == (200,) and h.sum() == pytest.approx(1.0)
    with pytest.raises(InvalidValueError, match="bins"):
        spectral_histograms([nx.path_graph(2)], bins=0)


def test_mmd_table_by_hand_on_a_triangle_against_a_path():
    k3, p3 = [nx.complete_graph(3)], [nx.path_graph(3)]
    gdss = mmd_table(k3, p3, convention="gdss")
    # one graph a side: MMD² = 2 - 2 k(x, y)
    # degree pmfs (0, 0, 1) and (0, 2/3, 1/3): EMD 2/3, sigma 1
    assert gdss["degree"] == pytest.approx(2 - 2 * math.exp(-(2 / 3) ** 2 / 2))
    # clustering all 1 (last bin) against all 0 (first): EMD 99 / 100, sigma 0.1
    assert gdss["clustering"] == pytest.approx(2 - 2 * math.exp(-0.99**2 / 0.02))
    # orbit means (2, 0, 0, 1, 0...) and (4/3, 2/3, 1/3, 0, 0...): squared L2 distance 2, sigma 30
    assert gdss["orbit"] == pytest.approx(2 - 2 * math.exp(-2 / 1800))
    # spectra: mass 1/3 moves 50 bins (1 -> 1.5) and 1/3 moves 49 (1.5 -> 2): EMD 33, kernel ~ 0
    assert gdss["spectral"] == pytest.approx(2.0)
    spectre = mmd_table(k3, p3, convention="spectre")
    eps = 1e-6  # SPECTRE's compute_mmd divides by sum + 1e-6
    assert spectre["degree"] == pytest.approx(2 - 2 * math.exp(-(2 / (3 + eps)) ** 2 / 2), rel=1e-12)
    assert spectre["clustering"] == pytest.approx(2 - 2 * math.exp(-(3 / (3 + eps)) ** 2 / 0.02), rel=1e-12)
    # orbit: TV of the raw means 0.5 * (2/3 + 2/3 + 1/3 + 1) = 4/3, sigma 30
    assert spectre["orbit"] == pytest.approx(2 - 2 * math.exp(-(4 / 3) ** 2 / 1800), rel=1e-12)
    # spectra (1/3 at 0, 2/3 at 150) against (1/3 at 0, 100, 199): TV 2/3
    assert spectre["spectral"] == pytest.approx(2 - 2 * math.exp(-(2 / (3 * (1 + eps))) ** 2 / 2), rel=1e-12)
    assert MMD_CONVENTIONS["digress"] is MMD_CONVENTIONS["spectre"]


@pytest.fixture(scope="module")
def community_and_grid() -> tuple[list, list]:
    return load_graphs("community_small", seed=0).test, load_graphs("grid", seed=0).test[:10]


def test_mmd_table_is_zero_on_identical_sets_and_large_on_different_ones(community_and_grid):
    community, grids = community_and_grid
    for convention in ("gdss", "spectre"):
        same = mmd_table(community, list(reversed(community)), convention=convention)
        assert set(same) == {"degree", "clustering", "orbit", "spectral"}
        assert all(abs(v) < 1e-12 for v in same.values()), (convention, same)
        apart = mmd_table(grids, community, convention=convention)
        assert all(v > 0.1 for v in apart.values()), (convention, apart)  # control: grids are not communities
        assert apart == pytest.approx(mmd_table(community, grids, convention=convention))
    # the two conventions are different numbers on the same sets
    gdss, spectre = mmd_table(grids, community), mmd_table(grids, community, "spectre")
    assert gdss["degree"] != pytest.approx(spectre["degree"])


def test_mmd_table_separates_a_train_split_from_a_shifted_set(community_and_grid):
    community, _ = community_and_grid
    train = load_graphs("community_small", seed=0).train[:20]
    near = mmd_table(train, community)
    denser = [nx.gnp_random_graph(g.number_of_nodes(), 0.7, seed=i) for i, g in enumerate(train)]
    far = mmd_table(denser, community)  # one community instead of two
    assert all(far[k] > near[k] for k in ("degree", "clustering", "orbit")), (near, far)


def test_mmd_table_drops_generated_graphs_without_nodes_and_refuses_bad_input():
    gen, ref = [nx.cycle_graph(5), nx.path_graph(4)], [nx.star_graph(3), nx.cycle_graph(6)]
    assert mmd_table(gen + [nx.Graph()], ref) == pytest.approx(mmd_table(gen, ref))
    with pytest.raises(InvalidValueError, match="unknown MMD convention 'graphrnn'.*gdss"):
        mmd_table(gen, ref, convention="graphrnn")
    with pytest.raises(InvalidValueError, match="non-empty"):
        mmd_table([], ref)
    with pytest.raises(InvalidValueError, match="non-empty"):
        mmd_table([nx.Graph()], ref)
    with pytest.raises(InvalidValueError, match="non-empty"):
        mmd_table(gen, [])
    with pytest.raises(InvalidValueError, match="reference graph has no nodes"):
        mmd_table(gen, ref + [nx.Graph()])
