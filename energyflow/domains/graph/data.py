"""Graph data sets of the graph-generation literature, generated offline with fixed seeds.

Every data set is a list of simple undirected :class:`networkx.Graph` objects with nodes
``0..n-1``, made by a documented recipe from one master seed (a
:class:`numpy.random.Generator`), then split into train / (validation) / test as the
papers that report on it do. Nothing is downloaded.

Recipes:

* ``community_small`` (GraphRNN, GDSS): 100 graphs. For each, ``N`` is uniform on
  ``{12, ..., 20}`` and the graph has two communities of ``N // 2`` nodes (so 12-20 nodes,
  even), each an Erdős–Rényi ``G(N // 2, 0.7)``. Every node pair across the two is joined
  with probability ``p_bridge = 0.05 * 2 / ((M - 1) * (N // 2))`` (``M = 2``
  communities); if no pair is, one bridge joins the first node of each. GDSS's generator
  seeds community ``i`` with ``seed=i``, so all its graphs of one size share their
  communities and many test graphs are isomorphic to training graphs; here each community
  draws fresh randomness from the master generator (``DESIGN.md``, section 6). Split:
  the first 20% test, the rest train (GDSS's ``graph_list[:test_size]``).
* ``grid`` (GDSS): 100 graphs ``networkx.grid_2d_graph(m, n)`` with ``m`` and ``n`` drawn
  uniformly from ``{10, ..., 19}`` (GDSS draws them with ``np.random.choice``, with
  replacement), nodes relabelled ``0..mn-1`` in sorted order. Split: first 20% test.
* ``sbm`` (SPECTRE): 200 graphs; the number of communities is uniform on ``{2, ..., 5}``,
  each community's size uniform on ``{20, ..., 40}``; edges inside a community with
  probability 0.3, across with 0.005 (``networkx.stochastic_block_model``). Split 128 /
  32 / 40 (train / validation / test) after a permutation drawn from the same generator.
* ``planar`` (SPECTRE): 200 graphs, each the Delaunay triangulation
  (``scipy.spatial.Delaunay``) of 64 points uniform in the unit square. Split 128 / 32 /
  40 as for ``sbm``.

Example:
    >>> split = load_graphs("community_small", seed=0)
    >>> len(split.train), len(split.test), split.validation
    (80, 20, [])
    >>> sorted({g.number_of_nodes() for g in split.train}) == [12, 14, 16, 18, 20]
    True
"""

from __future__ import annotations

from typing import Callable

import attrs
import networkx as nx
import numpy as np

from energyflow.errors import InvalidValueError

__all__ = ["GraphSplit", "GRAPH_DATASETS", "community_small", "grid", "sbm", "planar", "load_graphs"]


@attrs.frozen(eq=False)
class GraphSplit:
    """A graph data set split as its papers split it.

    Attributes:
        name (str): the data set.
        train (list[nx.Graph]): training graphs.
        validation (list[nx.Graph]): validation graphs (empty where the papers use none).
        test (list[nx.Graph]): held-out graphs, the reference of the metrics.
        seed (int): the master seed the graphs were generated with.
    """

    name: str
    train: list
    validation: list
    test: list
    seed: int


def _relabel(g: nx.Graph) -> nx.Graph:
    """A simple undirected graph with nodes ``0..n-1`` (in the sorted order of the old labels)."""
    g = nx.Graph(g)
    g.remove_edges_from(nx.selfloop_edges(g))
    return nx.convert_node_labels_to_integers(g, ordering="sorted")


def _community_graph(rng: np.random.Generator, num_nodes: int, num_communities: int = 2, p_intra: float = 0.7,
                     p_inter: float = 0.05) -> nx.Graph:
    size = num_nodes // num_communities
    p_bridge = p_inter * 2 / ((num_communities - 1) * size)
    parts = [nx.gnp_random_graph(size, p_intra, seed=int(rng.integers(2**31))) for _ in range(num_communities)]
    g = nx.disjoint_union_all(parts)
    blocks = [list(range(k * size, (k + 1) * size)) for k in range(num_communities)]
    for i in range(num_communities):
        for j in range(i + 1, num_communities):
            joined = rng.random((size, size)) < p_bridge
            for a, b in zip(*np.nonzero(joined)):
                g.add_edge(blocks[i][a], blocks[j][b])
            if not joined.any():
                g.add_edge(blocks[i][0], blocks[j][0])
    return _relabel(g)


def community_small(seed: int = 0, num_graphs: int = 100) -> list[nx.Graph]:
    """Two-community graphs of 12-20 nodes (GraphRNN/GDSS recipe, fresh randomness per community)."""
    rng = np.random.default_rng(seed)
    return [_community_graph(rng, int(rng.integers(12, 21))) for _ in range(num_graphs)]


def grid(seed: int = 0, num_graphs: int = 100) -> list[nx.Graph]:
    """2-D grids ``m x n`` with ``m, n`` uniform on ``{10, ..., 19}`` (GDSS recipe)."""
    rng = np.random.default_rng(seed)
    return [_relabel(nx.grid_2d_graph(int(rng.integers(10, 20)), int(rng.integers(10, 20)))) for _ in range(num_graphs)]


def sbm(seed: int = 0, num_graphs: int = 200) -> list[nx.Graph]:
    """Stochastic block models: 2-5 communities of 20-40 nodes, p 0.3 inside, 0.005 across (SPECTRE)."""
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(num_graphs):
        k = int(rng.integers(2, 6))
        sizes = [int(s) for s in rng.integers(20, 41, size=k)]
        probs = [[0.3 if a == b else 0.005 for b in range(k)] for a in range(k)]
        g = nx.stochastic_block_model(sizes, probs, seed=int(rng.integers(2**31)))
        graphs.append(_relabel(g))
    return graphs


def planar(seed: int = 0, num_graphs: int = 200, num_points: int = 64) -> list[nx.Graph]:
    """Delaunay triangulations of ``num_points`` uniform points in the unit square (SPECTRE)."""
    try:
        from scipy.spatial import Delaunay
    except ImportError as err:  # scipy is part of the graph extra
        raise ImportError("the planar graphs need scipy: pip install 'energyflow-em[graph]'") from err
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(num_graphs):
        tri = Delaunay(rng.random((num_points, 2)))
        g = nx.Graph()
        g.add_nodes_from(range(num_points))
        for a, b, c in tri.simplices:
            g.add_edges_from([(int(a), int(b)), (int(b), int(c)), (int(a), int(c))])
        graphs.append(_relabel(g))
    return graphs


def _first_fraction_test(graphs: list, seed: int, name: str, fraction: float = 0.2) -> GraphSplit:
    k = int(fraction * len(graphs))
    return GraphSplit(name, graphs[k:], [], graphs[:k], seed)


def _spectre_split(graphs: list, seed: int, name: str) -> GraphSplit:
    n = len(graphs)
    n_test = round(0.2 * n)
    n_train = round(0.8 * (n - n_test))
    order = np.random.default_rng([seed, 1]).permutation(n)  # a stream of its own: the graphs do not change
    pick = [graphs[i] for i in order]
    return GraphSplit(name, pick[:n_train], pick[n_train:n - n_test], pick[n - n_test:], seed)


# name -> (generator, split rule)
GRAPH_DATASETS: dict[str, tuple[Callable[..., list], Callable[[list, int, str], GraphSplit]]] = {
    "community_small": (community_small, _first_fraction_test),
    "grid": (grid, _first_fraction_test),
    "sbm": (sbm, _spectre_split),
    "planar": (planar, _spectre_split),
}


def load_graphs(name: str, seed: int = 0) -> GraphSplit:
    """Generates a named data set (see the module docstring) and splits it.

    Args:
        name (str): a key of :data:`GRAPH_DATASETS`.
        seed (int): the master seed (the published recipes fix the sizes, not the seed).

    Returns:
        GraphSplit: train / validation / test graphs.

    Raises:
        InvalidValueError: an unknown name or a negative seed.
    """
    if name not in GRAPH_DATASETS:
        raise InvalidValueError(f"unknown graph data set {name!r}; choose one of {sorted(GRAPH_DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidValueError(f"seed must be an integer >= 0, got {seed!r}")
    make, split = GRAPH_DATASETS[name]
    return split(make(seed=seed), seed, name)
