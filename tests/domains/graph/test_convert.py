"""Dense padded graph states: exact round trips through networkx and PyG on the data sets."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from energyflow.domains.graph.convert import dense_to_graphs, from_pyg, graphs_to_dense, to_pyg
from energyflow.domains.graph.data import load_graphs
from energyflow.errors import InvalidValueError


def _edges(g: nx.Graph) -> list:
    return sorted(tuple(sorted(e)) for e in g.edges())


@pytest.mark.parametrize("name", ["community_small", "planar"])
def test_dense_and_pyg_round_trips_are_exact_on_the_data(name):
    graphs = load_graphs(name, seed=0).test
    A, mask = graphs_to_dense(graphs, max_nodes=70)
    assert A.shape == (len(graphs), 70, 70)
    assert torch.equal(A, A.transpose(1, 2)) and bool((torch.diagonal(A, dim1=1, dim2=2) == 0).all())
    # nothing outside a graph's own nodes
    outside = 1 - mask.unsqueeze(1) * mask.unsqueeze(2)
    assert bool(((A * outside) == 0).all())
    back = dense_to_graphs(A, mask)
    pyg = from_pyg(to_pyg(graphs))
    for g, h, p in zip(graphs, back, pyg):
        assert h.number_of_nodes() == p.number_of_nodes() == g.number_of_nodes()
        assert _edges(h) == _edges(p) == _edges(g)


def test_decoding_thresholds_the_symmetrised_relaxation():
    A = torch.tensor([[[0.0, 0.7, 0.2], [0.5, 0.0, 0.9], [0.2, 0.9, 0.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    (g,) = dense_to_graphs(A, mask)
    assert g.number_of_nodes() == 2 and _edges(g) == [(0, 1)]  # (0.7 + 0.5) / 2 = 0.6 > 0.5
    (h,) = dense_to_graphs(A, mask, threshold=0.65)
    assert _edges(h) == []  # negative control: 0.6 is below this threshold


def test_bad_input_is_refused():
    with pytest.raises(InvalidValueError, match="at least one"):
        graphs_to_dense([])
    with pytest.raises(InvalidValueError, match="max_nodes"):
        graphs_to_dense([nx.path_graph(5)], max_nodes=4)
    with pytest.raises(InvalidValueError, match="directed"):
        graphs_to_dense([nx.DiGraph([(0, 1)])])
    with pytest.raises(InvalidValueError, match=r"\(B, N\)"):
        dense_to_graphs(torch.zeros(1, 3, 3), torch.ones(1, 4))
    from torch_geometric.data import Data

    with pytest.raises(InvalidValueError, match="outside"):
        from_pyg([Data(edge_index=torch.tensor([[0], [5]]), num_nodes=3)])
