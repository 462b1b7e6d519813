"""The generated graph data sets: their recipes, splits and determinism."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from energyflow.domains.graph.data import _community_graph, community_small, grid, load_graphs, planar, sbm
from energyflow.errors import InvalidValueError


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(sorted(x.edges()) == sorted(y.edges()) and x.number_of_nodes() == y.number_of_nodes()
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("name, sizes", [("community_small", (80, 0, 20)), ("grid", (80, 0, 20)),
                                         ("sbm", (128, 32, 40)), ("planar", (128, 32, 40))])
def test_splits_have_the_papers_sizes_and_are_deterministic(name, sizes):
    a, b = load_graphs(name, seed=3), load_graphs(name, seed=3)
    assert (len(a.train), len(a.validation), len(a.test)) == sizes
    assert _same(a.train, b.train) and _same(a.test, b.test) and _same(a.validation, b.validation)
    other = load_graphs(name, seed=4)  # every recipe is random (grid through its m and n)
    assert not _same(a.train, other.train)
    for g in a.train + a.validation + a.test:
        assert sorted(g.nodes()) == list(range(g.number_of_nodes()))
        assert nx.number_of_selfloops(g) == 0 and not g.is_directed()


def test_community_small_recipe():
    graphs = community_small(seed=0)
    assert len(graphs) == 100
    assert {g.number_of_nodes() for g in graphs} <= {12, 14, 16, 18, 20}
    for g in graphs:
        n = g.number_of_nodes()
        half = n // 2
        across = sum(1 for u, v in g.edges() if (u < half) != (v < half))
        assert across >= 1
    # Intra-community density ~0.7: over all graphs the fraction of intra pairs that are edges
    intra_pairs = sum(2 * (g.number_of_nodes() // 2) * (g.number_of_nodes() // 2 - 1) // 2 for g in graphs)
    intra_edges = sum(sum(1 for u, v in g.edges() if (u < g.number_of_nodes() // 2) == (v < g.number_of_nodes() // 2))
                      for g in graphs)
    # ~7,000 pairs: the binomial sd of the fraction is about 0.005; 0.03 is 6 sd
    assert intra_edges / intra_pairs == pytest.approx(0.7, abs=0.03)


def test_communities_are_fresh_not_seeded_by_index():
    """GDSS seeds community i with seed=i, so equal-size graphs repeat their communities; ours must not."""
    rng = np.random.default_rng(0)
    graphs = [_community_graph(rng, 16) for _ in range(20)]
    firsts = {tuple(sorted(g.subgraph(range(8)).edges())) for g in graphs}
    assert len(firsts) == 20
    # negative control: GDSS's seeding gives one community for all of them
    gdss = {tuple(sorted(nx.gnp_random_graph(8, 0.7, seed=0).edges())) for _ in range(20)}
    assert len(gdss) == 1


def test_bridges_follow_the_bridge_probability():
    """p_bridge = 0.05 * 2 / (N / 2): 0.0125 for N = 16, 64 pairs, so 0.8 bridges per graph on
    average before the at-least-one rule (P(none) = 0.45, then exactly 1). Expected bridges per graph
    0.8 + 0.45 = 1.25 (sd of the mean over 2,000 graphs about 0.02; tolerance 0.1)."""
    rng = np.random.default_rng(1)
    counts = []
    for _ in range(2000):
        g = _community_graph(rng, 16)
        counts.append(sum(1 for u, v in g.edges() if (u < 8) != (v < 8)))
    p = 0.05 * 2 / 8
    expected = 64 * p + (1 - p) ** 64
    assert np.mean(counts) == pytest.approx(expected, abs=0.1) and min(counts) >= 1


def test_grid_recipe():
    graphs = grid(seed=0)
    assert len(graphs) == 100
    dims = set()
    for g in graphs:
        degrees = sorted(d for _, d in g.degree())
        assert degrees[:4] == [2, 2, 2, 2] and max(degrees) == 4
        n = g.number_of_nodes()
        e = g.number_of_edges()  # m n nodes, m(n-1) + n(m-1) edges: solve for m + n
        s = 2 * n - e
        m = (s + np.sqrt(s * s - 4 * n)) / 2
        dims.add((round(min(m, n / m)), round(max(m, n / m))))
    assert all(10 <= a <= 19 and 10 <= b <= 19 for a, b in dims) and len(dims) > 20


def test_sbm_recipe():
    """2-5 blocks of 20-40 nodes; a node has about 0.3 * (block size - 1) ~ 9 neighbours inside its
    block and 0.005 * (rest) < 1 outside, so the mean degree over 30 graphs lies well within (6, 12)."""
    graphs = sbm(seed=0, num_graphs=30)
    assert all(40 <= g.number_of_nodes() <= 200 for g in graphs)
    mean_degree = np.mean([2 * g.number_of_edges() / g.number_of_nodes() for g in graphs])
    assert 6 < mean_degree < 12
    assert len({g.number_of_nodes() for g in graphs}) > 10


def test_planar_recipe():
    for g in planar(seed=0, num_graphs=10):
        assert g.number_of_nodes() == 64 and nx.is_connected(g) and nx.check_planarity(g)[0]
        # a triangulation of 64 points with h points on the hull has 3 * 64 - 3 - h edges
        assert 3 * 64 - 3 - 64 <= g.number_of_edges() <= 3 * 64 - 6


def test_bad_names_and_seeds_are_refused():
    with pytest.raises(InvalidValueError, match="unknown graph data set"):
        load_graphs("enzymes")
    with pytest.raises(InvalidValueError, match="seed"):
        load_graphs("grid", seed=-1)
