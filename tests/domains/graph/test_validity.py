"""Validity, uniqueness, novelty and V.U.N. (DiGress's definitions): hand-made cases, the sbm and planar data.

The SBM check's block fit is not DiGress's (graph-tool cannot be installed); the tests
here show it recovers the planted blocks of the repo's sbm data, accepts the real sbm
graphs at the rate the recipe allows, and rejects Erdős–Rényi and planar graphs.
"""

from __future__ import annotations

import math
import time

import networkx as nx
import numpy as np
import pytest
from scipy.stats import chi2

from energyflow.domains.graph.data import load_graphs
from energyflow.domains.graph.validity import (
    VALIDITY,
    fraction_novel,
    fraction_unique,
    fraction_valid,
    is_planar_valid,
    is_sbm_valid,
    resolve_validity,
    sbm_blocks,
    sbm_wald_p_value,
    vun,
)
from energyflow.errors import InvalidTypeError, InvalidValueError


def _relabelled(g: nx.Graph, seed: int) -> nx.Graph:
    """An isomorphic copy of ``g`` with its nodes permuted (and inserted in a new order)."""
    perm = np.random.default_rng(seed).permutation(g.number_of_nodes()).tolist()
    mapping = dict(zip(g.nodes(), perm))
    h = nx.Graph()
    h.add_nodes_from(sorted(mapping.values()))
    h.add_edges_from((mapping[u], mapping[v]) for u, v in g.edges())
    return h


def _planted(g: nx.Graph) -> list[set]:
    """The planted blocks that networkx.stochastic_block_model stores on the nodes."""
    blocks: dict[int, set] = {}
    for v, b in g.nodes(data="block"):
        blocks.setdefault(b, set()).add(v)
    return sorted(blocks.values(), key=min)


@pytest.fixture(scope="module")
def sbm_data():
    return load_graphs("sbm", seed=0)


@pytest.fixture(scope="module")
def planar_data():
    return load_graphs("planar", seed=0)


# --------------------------------------------------------------------------- planar


def test_planar_validity_by_hand():
    assert not is_planar_valid(nx.complete_graph(5))                   # K5
    assert not is_planar_valid(nx.complete_bipartite_graph(3, 3))      # K3,3
    assert is_planar_valid(nx.complete_graph(4)) and is_planar_valid(nx.wheel_graph(9))
    assert is_planar_valid(nx.grid_2d_graph(4, 5)) and is_planar_valid(nx.path_graph(1))
    # planar but disconnected: two triangles, or a triangle and an isolated node
    assert not is_planar_valid(nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3)))
    g = nx.cycle_graph(3)
    g.add_node(3)
    assert not is_planar_valid(g)
    assert not is_planar_valid(nx.Graph())                              # no nodes: not valid (no crash)
    # K5 minus an edge is planar; subdividing K3,3 keeps it non-planar
    k5 = nx.complete_graph(5)
    k5.remove_edge(0, 1)
    assert is_planar_valid(k5)
    k33 = nx.complete_bipartite_graph(3, 3)
    k33.remove_edge(0, 3)
    k33.add_edges_from([(0, 6), (6, 3)])
    assert not is_planar_valid(k33)


def test_planar_validity_on_the_data_and_controls(planar_data, sbm_data):
    graphs = planar_data.train + planar_data.validation + planar_data.test
    assert fraction_valid(graphs, "planar") == 1.0          # Delaunay triangulations: planar, connected
    assert fraction_valid(sbm_data.test, "planar") == 0.0   # dense blocks of 20-40 nodes at p = 0.3
    rng = np.random.default_rng(0)
    er = [nx.gnm_random_graph(64, g.number_of_edges(), seed=int(rng.integers(2**31)))
          for g in planar_data.test]
    # G(64, ~180 edges) is far past the planarity threshold (random graphs with m > n/2 contain K3,3/K5
    # subdivisions w.h.p.); observed 0 of 40
    assert fraction_valid(er, "planar") == 0.0


# --------------------------------------------------------------------------- uniqueness / novelty / vun


def test_uniqueness_counts_duplicates_by_isomorphism():
    p4, star, c4 = nx.path_graph(4), nx.star_graph(3), nx.cycle_graph(4)
    graphs = [p4, _relabelled(p4, 1), star, c4, c4.copy(), _relabelled(star, 2)]
    assert fraction_unique(graphs) == 3 / 6                              # classes P4, star, C4
    assert fraction_unique([p4]) == 1.0
    assert fraction_unique([nx.empty_graph(3), nx.empty_graph(3), nx.empty_graph(4)]) == 2 / 3
    # same size, degrees and 1-WL colours (both 2-regular on 6 nodes) but not isomorphic:
    # the prefilter puts them in one bucket and the exact test separates them
    two_triangles = nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))
    assert fraction_unique([nx.cycle_graph(6), two_triangles]) == 1.0
    # node and edge attributes are ignored, as in DiGress
    attributed = nx.path_graph(4)
    nx.set_node_attributes(attributed, "x", "label")
    assert fraction_unique([p4, attributed]) == 0.5


def test_novelty_by_isomorphism():
    train = [nx.path_graph(6), nx.cycle_graph(6), nx.petersen_graph()]
    copy = _relabelled(nx.petersen_graph(), 3)
    assert copy.edges() != nx.petersen_graph().edges()                  # a real relabelling ...
    assert fraction_novel([copy], train) == 0.0                          # ... still not novel
    # duplicates count each time (DiGress's 1 - eval_fraction_isomorphic over all generated graphs)
    assert fraction_novel([copy, copy, nx.star_graph(5), nx.wheel_graph(6)], train) == 2 / 4
    assert fraction_novel([nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))], train) == 1.0


def test_vun_by_hand():
    train = [nx.cycle_graph(7), nx.path_graph(7)]
    wheel = nx.wheel_graph(7)
    generated = [
        wheel,                    # valid, novel, first of its class   -> counts in vun
        _relabelled(wheel, 4),    # duplicate of the first             -> not unique
        _relabelled(train[0], 5),  # copy of a training graph          -> not novel
        nx.complete_graph(5),     # novel, unique, not planar          -> not valid
        nx.ladder_graph(4),       # valid, novel, unique               -> counts in vun
        nx.ladder_graph(4),       # duplicate
        nx.Graph([(0, 1), (2, 3)]),  # disconnected                    -> not valid
        _relabelled(train[1], 6),  # copy of a training graph, planar  -> valid, not novel
    ]
    result = vun(generated, train, "planar")
    assert result == {"valid": 6 / 8, "unique": 6 / 8, "novel": 6 / 8, "vun": 2 / 8}
    assert result["unique"] == fraction_unique(generated)
    assert result["novel"] == fraction_novel(generated, train)
    assert result["valid"] == fraction_valid(generated, is_planar_valid)
    # a callable works as well as a name, and each graph's validity is computed once
    calls = []

    def counting(g):
        calls.append(g)
        return is_planar_valid(g)

    assert vun(generated, train, counting) == result and len(calls) == len(generated)


def _digress_reference(fake, train, valid):
    """DiGress's definitions written out the slow way: every pair, no prefilter."""
    n = len(fake)
    first = [not any(nx.is_isomorphic(fake[i], fake[j]) for j in range(i)) for i in range(n)]
    novel = [not any(nx.is_isomorphic(g, t) for t in train) for g in fake]
    ok = [valid(g) for g in fake]
    return {"valid": sum(ok) / n, "unique": sum(first) / n, "novel": sum(novel) / n,
            "vun": sum(f and v and o for f, v, o in zip(first, novel, ok)) / n}


def test_vun_matches_the_all_pairs_reference_on_random_small_graphs():
    # small G(n, p) graphs collide often: duplicates, train copies and WL-equal non-isomorphic pairs all occur
    rng = np.random.default_rng(7)

    def draw(k):
        return [nx.gnp_random_graph(int(rng.integers(4, 7)), 0.5, seed=int(rng.integers(2**31)))
                for _ in range(k)]

    for _ in range(5):
        fake, train = draw(40), draw(30)
        fake = [_relabelled(g, i) if i % 3 == 0 else g for i, g in enumerate(fake)]
        expected = _digress_reference(fake, train, is_planar_valid)
        assert 0 < expected["unique"] < 1 and 0 < expected["novel"] < 1   # the cases are exercised
        assert vun(fake, train, "planar") == expected


# --------------------------------------------------------------------------- SBM


def test_wald_p_value_by_hand():
    # two paths of 3 nodes (2 of 3 pairs inside each) joined by one edge (1 of 9 pairs across)
    g = nx.Graph([(0, 1), (1, 2), (3, 4), (4, 5), (2, 3)])
    p_intra, p_inter = 0.5, 0.1
    est_intra, est_inter = 4 / (6 + 1e-6), 1 / (9 + 1e-6)  # DiGress: 2 e_rr / n(n-1), e_rs / n_r n_s
    w_intra = (est_intra - p_intra) ** 2 / (est_intra * (1 - est_intra) + 1e-6)
    w_inter = (est_inter - p_inter) ** 2 / (est_inter * (1 - est_inter) + 1e-6)
    expected = (2 * chi2.sf(w_intra, 1) + 2 * chi2.sf(w_inter, 1)) / 4  # mean over the 2 x 2 matrix
    assert sbm_wald_p_value(g, [{0, 1, 2}, {3, 4, 5}], p_intra, p_inter) == pytest.approx(expected, rel=1e-9)
    # a pair of blocks without an edge between them: W = p_inter^2 / 1e-6 = 25, p-value ~ 6e-7
    two = nx.disjoint_union(nx.path_graph(3), nx.path_graph(3))
    p = sbm_wald_p_value(two, [{0, 1, 2}, {3, 4, 5}], 2 / 3, 0.005)
    assert p == pytest.approx((2 * chi2.sf(0.0, 1) + 2 * chi2.sf(0.005**2 / 1e-6, 1)) / 4, abs=1e-6)
    assert p == pytest.approx(0.5, abs=1e-5)


def test_sbm_validity_by_hand():
    assert not is_sbm_valid(nx.empty_graph(60))                          # no edges
    assert sbm_blocks(nx.empty_graph(4)) == [{0, 1, 2, 3}] and sbm_blocks(nx.Graph()) == []
    assert not is_sbm_valid(nx.complete_graph(30))                       # one block
    two = nx.stochastic_block_model([25, 30], [[0.3, 0.005], [0.005, 0.3]], seed=1)
    assert is_sbm_valid(two)
    assert not is_sbm_valid(two, max_blocks=1)
    assert not is_sbm_valid(two, min_size=26)                            # block of 25
    assert not is_sbm_valid(two, p_intra=0.6)                            # estimates far from the truth
    # an isolated node joins a block (the SBM likelihood of its zero edges), never a block of its own
    lonely = nx.Graph(two)
    lonely.add_node("isolated")
    assert sorted(len(b) for b in sbm_blocks(lonely)) in ([25, 31], [26, 30]) and is_sbm_valid(lonely)
    # labels need not be integers; the fit is deterministic
    named = nx.relabel_nodes(two, {v: f"v{v}" for v in two})
    assert sbm_blocks(named) == sbm_blocks(named) and is_sbm_valid(named)
    # ten blocks of 10: too many and too small (a BIC-like criterion, the ICL, merged these into 7)
    probs = [[0.6 if a == b else 0.01 for b in range(10)] for a in range(10)]
    many = nx.stochastic_block_model([10] * 10, probs, seed=2)
    assert len(sbm_blocks(many)) == 10 and not is_sbm_valid(many)


def test_sbm_blocks_recover_the_planted_partition(sbm_data):
    graphs = sbm_data.train + sbm_data.validation + sbm_data.test
    fit = sum(sbm_blocks(g) == _planted(g) for g in graphs)
    louvain = sum(sorted(nx.community.louvain_communities(g, seed=0), key=min) == _planted(g) for g in graphs)
    # observed: the fit is the planted partition on 198 of the 200 data graphs (the other two
    # differ by one node, which the description length places elsewhere); Louvain alone on
    # 181 (14 planted blocks split in two, 5 nodes misplaced). 195 leaves room for a networkx
    # Louvain change without hiding a broken refinement
    assert fit >= 195 and louvain < fit


def test_sbm_validity_on_the_data_and_negative_controls(sbm_data, planar_data):
    test = sbm_data.test
    rate = fraction_valid(test, "sbm")
    # The recipe itself fails DiGress's Wald check whenever two blocks have no edge between
    # them (W = 25, p ~ 6e-7 for that entry pulls the mean below 0.9): the probability that
    # every pair of blocks is joined is 0.90 for 2-5 blocks of 20-40 nodes at p_inter = 0.005
    # (Monte Carlo, 2e5 draws). Observed: 34 / 40 on the test split (0.925 on all 200), the
    # same as with the planted blocks. 0.75 is 3 binomial sd (0.047 at n = 40) below 0.90.
    assert rate >= 0.75
    oracle = [all(20 <= len(b) <= 40 for b in _planted(g)) and sbm_wald_p_value(g, _planted(g)) > 0.9
              for g in test]
    assert abs(rate - sum(oracle) / len(test)) <= 1 / 40                # the fit costs at most one graph

    # Erdős–Rényi graphs with the nodes and edges of each test graph: the refinement merges
    # Louvain's communities into one block, below min_blocks; observed 0 / 40
    rng = np.random.default_rng(0)
    er = [nx.gnm_random_graph(g.number_of_nodes(), g.number_of_edges(), seed=int(rng.integers(2**31)))
          for g in test]
    assert fraction_valid(er, "sbm") <= 0.05

    # Planar triangulations of 64 nodes: the fit cuts them into 3-6 spatial blocks, mostly
    # below 20 nodes; DiGress's Wald statistic is lenient (not scaled by the number of node
    # pairs: a 21-node piece of a triangulation, density ~0.2, still scores p ~ 0.8 against
    # 0.3), so the rare cut into 3 blocks of 20-23 nodes passes: observed 1 / 40 on the test
    # split (1 / 200 on all). 0.1 = 4 / 40 allows for a different Louvain start
    assert fraction_valid(planar_data.test, "sbm") <= 0.1


def test_vun_on_the_data_itself(sbm_data, planar_data):
    # test graphs against the training graphs: a sanity floor for any generator
    planar = vun(planar_data.test, planar_data.train, "planar")
    assert planar == {"valid": 1.0, "unique": 1.0, "novel": 1.0, "vun": 1.0}
    sbm = vun(sbm_data.test, sbm_data.train, "sbm")
    assert sbm["unique"] == 1.0 and sbm["novel"] == 1.0 and sbm["vun"] == sbm["valid"] >= 0.75
    # relabelled copies of training graphs: unique, but none novel
    copies = [_relabelled(g, i) for i, g in enumerate(planar_data.train[:40])]
    assert vun(copies, planar_data.train, "planar") == {"valid": 1.0, "unique": 1.0, "novel": 0.0, "vun": 0.0}


def test_vun_is_fast_on_planar_sized_inputs(planar_data):
    # 40 generated vs 128 training graphs of 64 nodes takes about 0.5 s here (2 shared
    # cores), the worst case of 40 relabelled training copies (every novelty check an exact
    # isomorphism) about 1 s; 30 s only catches an all-pairs blow-up
    copies = [_relabelled(g, i) for i, g in enumerate(planar_data.train[:40])]
    start = time.perf_counter()
    vun(planar_data.test, planar_data.train, "planar")
    vun(copies, planar_data.train, "planar")
    assert time.perf_counter() - start < 30.0


# --------------------------------------------------------------------------- errors and registry


def test_registry_and_resolver():
    assert VALIDITY == {"planar": is_planar_valid, "sbm": is_sbm_valid}
    assert resolve_validity("sbm") is is_sbm_valid
    assert resolve_validity(len) is len
    with pytest.raises(InvalidValueError, match=r"unknown graph validity 'grid'.*\['planar', 'sbm'\]"):
        resolve_validity("grid")
    with pytest.raises(InvalidTypeError, match="callable"):
        resolve_validity(3)
    with pytest.raises(InvalidValueError, match="choose one of"):
        vun([nx.path_graph(3)], [nx.path_graph(3)], "lobster")


@pytest.mark.parametrize("call", [
    lambda gs: fraction_unique(gs),
    lambda gs: fraction_novel(gs, [nx.path_graph(3)]),
    lambda gs: fraction_novel([nx.path_graph(3)], gs),
    lambda gs: fraction_valid(gs, "planar"),
    lambda gs: vun(gs, [nx.path_graph(3)], "planar"),
    lambda gs: vun([nx.path_graph(3)], gs, "planar"),
])
def test_bad_graph_lists_raise(call):
    with pytest.raises(InvalidValueError, match="empty"):
        call([])
    with pytest.raises(InvalidTypeError, match=r"\[1\] must be a networkx.Graph"):
        call([nx.path_graph(3), np.eye(3)])
    with pytest.raises(InvalidTypeError, match="simple undirected"):
        call([nx.DiGraph([(0, 1)])])
    with pytest.raises(InvalidTypeError, match="simple undirected"):
        call([nx.MultiGraph([(0, 1)])])
    with pytest.raises(InvalidTypeError, match="list of networkx graphs"):
        call(nx.path_graph(3))                                            # a graph, not a list of graphs
    with pytest.raises(InvalidTypeError, match="list of networkx graphs"):
        call(None)


def test_bad_single_graphs_raise():
    for check in (is_planar_valid, is_sbm_valid, sbm_blocks):
        with pytest.raises(InvalidTypeError, match="must be a networkx.Graph"):
            check(np.ones((3, 3)))
        with pytest.raises(InvalidTypeError, match="simple undirected"):
            check(nx.DiGraph([(0, 1)]))
    g = nx.path_graph(4)
    with pytest.raises(InvalidValueError, match="partition"):
        sbm_wald_p_value(g, [{0, 1}, {2}])                                # node 3 in no block
    with pytest.raises(InvalidValueError, match="partition"):
        sbm_wald_p_value(g, [{0, 1, 2}, {2, 3}])                          # node 2 twice
    with pytest.raises(InvalidValueError, match="partition"):
        sbm_wald_p_value(g, [{0, 1, 2, 3, 9}])                            # unknown node
    with pytest.raises(InvalidValueError, match="p_inter"):
        sbm_wald_p_value(g, [{0, 1}, {2, 3}], p_inter=1.5)
    with pytest.raises(InvalidValueError, match="p_intra"):
        is_sbm_valid(nx.complete_graph(3), p_intra=-0.1)


def test_chi2_tail_is_erfc():
    # the module's p-value 1 - chi2.cdf(W, 1) is computed as erfc(sqrt(W / 2)) (no SciPy needed)
    for w in (0.0, 1e-4, 0.1, 1.0, 3.84, 25.0):
        assert math.erfc(math.sqrt(w / 2)) == pytest.approx(chi2.sf(w, 1), rel=1e-9, abs=1e-300)
