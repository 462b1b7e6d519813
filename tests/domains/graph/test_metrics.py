"""Graph MMD kernels on hand-computed cases, and the 1-D EMD against SciPy's Wasserstein distance."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from energyflow.domains.graph.metrics import (
    clustering_histograms,
    degree_histograms,
    gaussian_emd_kernel,
    gaussian_tv_kernel,
    mmd2,
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
