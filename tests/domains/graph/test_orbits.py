"""The NumPy orbit counter against ORCA (orbit-count bindings), a brute-force enumeration and hand counts."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from energyflow.domains.graph.data import load_graphs
from energyflow.domains.graph.orbits import NUM_ORBITS, node_orbit_counts
from energyflow.errors import InvalidTypeError, InvalidValueError

# The connected graphlets on 2-4 nodes, each with the ORCA orbit of every template node.
_TEMPLATES: list[tuple[nx.Graph, dict[int, int]]] = [
    (nx.path_graph(2), {0: 0, 1: 0}),
    (nx.path_graph(3), {0: 1, 1: 2, 2: 1}),
    (nx.complete_graph(3), {0: 3, 1: 3, 2: 3}),
    (nx.path_graph(4), {0: 4, 1: 5, 2: 5, 3: 4}),
    (nx.star_graph(3), {0: 7, 1: 6, 2: 6, 3: 6}),
    (nx.cycle_graph(4), {0: 8, 1: 8, 2: 8, 3: 8}),
    (nx.Graph([(0, 1), (0, 2), (1, 2), (0, 3)]), {0: 11, 1: 10, 2: 10, 3: 9}),          # paw
    (nx.Graph([(0, 2), (0, 3), (2, 3), (1, 2), (1, 3)]), {0: 12, 1: 12, 2: 13, 3: 13}),  # diamond
    (nx.complete_graph(4), {0: 14, 1: 14, 2: 14, 3: 14}),
]


def _connected_sets(g: nx.Graph, size: int) -> set[frozenset]:
    """Every node set of ``size`` nodes that induces a connected subgraph (grown from edges)."""
    sets = {frozenset(e) for e in g.edges()}
    for _ in range(size - 2):
        sets = {s | {w} for s in sets for v in s for w in g[v] if w not in s}
    return sets


def brute_force_orbits(g: nx.Graph) -> np.ndarray:
    """ORCA's orbits by definition: each connected induced 2-4-node subgraph matched to its template."""
    index = {v: i for i, v in enumerate(sorted(g.nodes()))}
    out = np.zeros((len(index), NUM_ORBITS), dtype=np.int64)
    for size in (2, 3, 4):
        for nodes in _connected_sets(g, size):
            sub = g.subgraph(nodes)
            for template, orbit in _TEMPLATES:
                if template.number_of_nodes() != size or template.number_of_edges() != sub.number_of_edges():
                    continue
                matcher = nx.algorithms.isomorphism.GraphMatcher(sub, template)
                if matcher.is_isomorphic():
                    for v, t in matcher.mapping.items():
                        out[index[v], orbit[t]] += 1
                    break
            else:
                raise AssertionError(f"no template for {sorted(sub.edges())}")
    return out


def orca_orbits(g: nx.Graph) -> np.ndarray:
    orbit_count = pytest.importorskip("orbit_count")  # ORCA's C++ via the GPL orbit-count bindings
    if g.number_of_edges() == 0:  # the bindings refuse an empty edge list
        return np.zeros((g.number_of_nodes(), NUM_ORBITS), dtype=np.int64)
    return np.asarray(orbit_count.node_orbit_counts(g, node_list=sorted(g.nodes())), dtype=np.int64)


@pytest.fixture(scope="module")
def splits() -> dict:
    return {name: load_graphs(name, seed=0) for name in ("community_small", "planar")}


def _random_graphs(count: int, seed: int, max_nodes: int) -> list[nx.Graph]:
    """G(n, p) with n uniform on 1..max_nodes and p uniform on [0, 1]: from empty to complete."""
    rng = np.random.default_rng(seed)
    return [nx.gnp_random_graph(int(rng.integers(1, max_nodes + 1)), float(rng.random()),
                                seed=int(rng.integers(2**31))) for _ in range(count)]


def _graph(edges: list[tuple[int, int]]) -> nx.Graph:
    g = nx.empty_graph(4)  # nodes inserted in sorted order
    g.add_edges_from(edges)
    return g


PAW = _graph([(0, 1), (0, 2), (1, 2), (0, 3)])            # triangle 0-1-2, pendant 3 at node 0
DIAMOND = _graph([(0, 2), (0, 3), (2, 3), (1, 2), (1, 3)])  # K4 minus the edge 0-1


def _row(**orbits: int) -> list[int]:
    row = [0] * NUM_ORBITS
    for k, v in orbits.items():
        row[int(k[1:])] = v
    return row


@pytest.mark.parametrize(("graph", "expected"), [
    # path 0-1-2-3: the ends are P3 ends (1-2 from 0) and P4 ends; the inner nodes P3 middles and ends
    (nx.path_graph(4), [_row(o0=1, o1=1, o4=1), _row(o0=2, o1=1, o2=1, o5=1),
                        _row(o0=2, o1=1, o2=1, o5=1), _row(o0=1, o1=1, o4=1)]),
    # star centred at 0: three P3 middles and the claw centre; leaves end two P3s each
    (nx.star_graph(3), [_row(o0=3, o2=3, o7=1)] + [_row(o0=1, o1=2, o6=1)] * 3),
    # 4-cycle: each node ends two induced P3s and is the middle of one; one C4
    (nx.cycle_graph(4), [_row(o0=2, o1=2, o2=1, o8=1)] * 4),
    # K4: three triangles, one K4, no induced paths
    (nx.complete_graph(4), [_row(o0=3, o3=3, o14=1)] * 4),
    # paw: the centre is the middle of the two P3s through the pendant; the pendant ends them
    (PAW, [_row(o0=3, o2=2, o3=1, o11=1), _row(o0=2, o1=1, o3=1, o10=1), _row(o0=2, o1=1, o3=1, o10=1),
           _row(o0=1, o1=2, o9=1)]),
    # diamond: the degree-2 nodes 0, 1 end two P3s (0-2-1, 0-3-1) and sit in one triangle each;
    # 2 and 3 are in both triangles and the middle of one P3 (0-2-1, 0-3-1)
    (DIAMOND, [_row(o0=2, o1=2, o3=1, o12=1), _row(o0=2, o1=2, o3=1, o12=1),
               _row(o0=3, o2=1, o3=2, o13=1), _row(o0=3, o2=1, o3=2, o13=1)]),
    (nx.complete_graph(3), [_row(o0=2, o3=1)] * 3),
    (nx.empty_graph(3), [_row()] * 3),
])
def test_hand_counted_graphlets(graph, expected):
    got = node_orbit_counts(graph)
    assert got.dtype == np.int64 and got.shape == (graph.number_of_nodes(), NUM_ORBITS)
    assert got.tolist() == expected
    assert got.tolist() == brute_force_orbits(graph).tolist()


def test_the_empty_graph_and_a_disjoint_union():
    assert node_orbit_counts(nx.Graph()).shape == (0, NUM_ORBITS)
    union = nx.disjoint_union(PAW, DIAMOND)  # orbits are local: the rows of the parts, stacked
    parts = np.vstack([node_orbit_counts(PAW), node_orbit_counts(DIAMOND)])
    assert np.array_equal(node_orbit_counts(union), parts)


def test_matches_orca_on_the_community_small_and_planar_graphs(splits):
    for name, split in splits.items():
        graphs = split.train + split.validation + split.test
        for i, g in enumerate(graphs):
            assert np.array_equal(node_orbit_counts(g), orca_orbits(g)), (name, i)


def test_matches_orca_on_random_graphs():
    for i, g in enumerate(_random_graphs(200, seed=0, max_nodes=40)):  # K4-rich dense cases too
        assert np.array_equal(node_orbit_counts(g), orca_orbits(g)), i


def test_matches_the_brute_force_on_random_and_test_graphs(splits):
    # the second reference, independent of ORCA (runs without the test-only bindings)
    graphs = _random_graphs(40, seed=1, max_nodes=12)
    graphs += splits["community_small"].test[:3] + splits["planar"].test[:1]
    for i, g in enumerate(graphs):
        assert np.array_equal(node_orbit_counts(g), brute_force_orbits(g)), i


def test_rows_follow_sorted_node_labels():
    g = nx.relabel_nodes(PAW, {0: "d", 1: "b", 2: "c", 3: "a"})  # insertion order d, b, c, a
    got = node_orbit_counts(g)
    assert got[0].tolist() == node_orbit_counts(PAW)[3].tolist()  # "a" is the pendant
    assert got[3, 11] == 1                                         # "d" the degree-3 node
    perm = np.random.default_rng(1).permutation(20)
    h = nx.gnp_random_graph(20, 0.4, seed=3)
    relabelled = nx.relabel_nodes(h, {v: int(perm[v]) for v in h})
    assert np.array_equal(node_orbit_counts(relabelled)[perm], node_orbit_counts(h))


def test_graphlet_totals_agree_with_networkx():
    for g in _random_graphs(20, seed=5, max_nodes=25):
        o = node_orbit_counts(g)
        assert o[:, 3].sum() == sum(nx.triangles(g).values())
        k4 = sum(1 for c in nx.enumerate_all_cliques(g) if len(c) == 4)
        assert o[:, 14].sum() == 4 * k4
        assert (o >= 0).all()


def test_negative_controls_the_comparison_catches_wrong_counts(splits):
    g = splits["planar"].test[0]
    ref = orca_orbits(g)
    ours = node_orbit_counts(g)
    # ORCA's numbering matters: swapping the paw ends (9 <-> 11) or the diamond orbits (12 <-> 13) is caught
    for a, b in ((9, 11), (12, 13), (4, 5)):
        swapped = ours.copy()
        swapped[:, [a, b]] = swapped[:, [b, a]]
        assert not np.array_equal(swapped, ref), (a, b)
    # one edge less changes the counts: the agreement above is not vacuous
    h = g.copy()
    h.remove_edge(*next(iter(g.edges())))
    assert not np.array_equal(node_orbit_counts(h), ref)
    # induced, not subgraph, counts: a K4 holds paths, claws and cycles, but induces only itself
    assert node_orbit_counts(nx.complete_graph(4))[:, 4:14].sum() == 0


def test_refuses_what_is_not_a_simple_undirected_graph():
    with pytest.raises(InvalidTypeError):
        node_orbit_counts(np.eye(3))  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="undirected"):
        node_orbit_counts(nx.DiGraph([(0, 1)]))
    with pytest.raises(InvalidValueError, match="multigraph"):
        node_orbit_counts(nx.MultiGraph([(0, 1), (0, 1)]))
    with pytest.raises(InvalidValueError, match="self-loops"):
        node_orbit_counts(nx.Graph([(0, 0), (0, 1)]))


def test_all_graphlets_on_four_nodes_are_covered():
    # every graph on 4 labelled nodes (64 of them) against the brute force
    pairs = list(itertools.combinations(range(4), 2))
    for mask in range(1 << len(pairs)):
        g = nx.empty_graph(4)
        g.add_edges_from(p for i, p in enumerate(pairs) if mask >> i & 1)
        assert np.array_equal(node_orbit_counts(g), brute_force_orbits(g)), sorted(g.edges())
