"""Dense padded graph states and their conversions to networkx and PyTorch Geometric.

A batch of graphs is a dense state: ``adjacency`` ``(B, N, N)`` (symmetric, zero diagonal,
zero outside each graph's nodes) and ``mask`` ``(B, N)`` (1 for a graph's nodes, which
come first, 0 for padding). The energy model works on a continuous relaxation of the
adjacency; decoding thresholds it: an edge wherever ``A_ij > threshold`` between two real
nodes (0.5 for data in {0, 1}).

Example:
    >>> import networkx as nx
    >>> A, mask = graphs_to_dense([nx.path_graph(3), nx.cycle_graph(4)])
    >>> A.shape, mask.sum(1).tolist()
    (torch.Size([2, 4, 4]), [3.0, 4.0])
    >>> [g.number_of_edges() for g in dense_to_graphs(A, mask)]
    [2, 4]
"""

from __future__ import annotations

import networkx as nx
import torch
from torch import Tensor

from energyflow.errors import InvalidValueError

__all__ = ["graphs_to_dense", "dense_to_graphs", "to_pyg", "from_pyg"]


def graphs_to_dense(graphs: list, max_nodes: int | None = None, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Pads graphs into a dense batch.

    Args:
        graphs (list[nx.Graph]): simple undirected graphs; node ``k`` of the sorted node
            list becomes row ``k``.
        max_nodes (int | None): ``N``; default the largest graph.
        dtype (torch.dtype): of both outputs.

    Returns:
        tuple[Tensor, Tensor]: ``adjacency`` ``(B, N, N)`` in {0, 1} and ``mask``
        ``(B, N)`` in {0, 1}.

    Raises:
        InvalidValueError: no graphs, a directed graph, or a graph larger than ``max_nodes``.
    """
    if not graphs:
        raise InvalidValueError("graphs_to_dense needs at least one graph")
    sizes = [g.number_of_nodes() for g in graphs]
    n = max(sizes) if max_nodes is None else int(max_nodes)
    if max(sizes) > n:
        raise InvalidValueError(f"a graph has {max(sizes)} nodes, more than max_nodes={n}")
    adjacency = torch.zeros(len(graphs), n, n, dtype=dtype)
    mask = torch.zeros(len(graphs), n, dtype=dtype)
    for b, g in enumerate(graphs):
        if g.is_directed():
            raise InvalidValueError(f"graph {b} is directed; the graph domain models undirected graphs")
        index = {node: k for k, node in enumerate(sorted(g.nodes()))}
        mask[b, : len(index)] = 1
        for u, v in g.edges():
            if u != v:
                adjacency[b, index[u], index[v]] = adjacency[b, index[v], index[u]] = 1
    return adjacency, mask


def _check_dense(adjacency: Tensor, mask: Tensor) -> None:
    if adjacency.dim() != 3 or adjacency.shape[1] != adjacency.shape[2]:
        raise InvalidValueError(f"adjacency must be (B, N, N), got {tuple(adjacency.shape)}")
    if mask.shape != adjacency.shape[:2]:
        raise InvalidValueError(f"mask must be (B, N) = {tuple(adjacency.shape[:2])}, got {tuple(mask.shape)}")


def dense_to_graphs(adjacency: Tensor, mask: Tensor, threshold: float = 0.5) -> list[nx.Graph]:
    """Decodes a dense batch: an edge ``i - j`` between real nodes where ``(A_ij + A_ji) / 2 > threshold``.

    Args:
        adjacency (Tensor): ``(B, N, N)``, continuous values allowed.
        mask (Tensor): ``(B, N)``; nodes with ``mask > 0.5`` are kept, as nodes ``0..n-1``.
        threshold (float): the edge threshold.

    Returns:
        list[nx.Graph]: one graph per batch element.
    """
    _check_dense(adjacency, mask)
    sym = 0.5 * (adjacency + adjacency.transpose(1, 2)).detach().cpu()
    keep = (mask.detach().cpu() > 0.5)
    graphs = []
    for b in range(adjacency.shape[0]):
        nodes = torch.nonzero(keep[b]).flatten()
        sub = sym[b][nodes][:, nodes]
        g = nx.Graph()
        g.add_nodes_from(range(len(nodes)))
        iu = torch.triu_indices(len(nodes), len(nodes), offset=1)
        on = sub[iu[0], iu[1]] > threshold
        g.add_edges_from(zip(iu[0][on].tolist(), iu[1][on].tolist()))
        graphs.append(g)
    return graphs


def to_pyg(graphs: list) -> list:
    """networkx graphs -> PyG ``Data`` objects (``edge_index`` both directions, ``num_nodes``)."""
    from torch_geometric.data import Data

    out = []
    for g in graphs:
        index = {node: k for k, node in enumerate(sorted(g.nodes()))}
        pairs = [(index[u], index[v]) for u, v in g.edges() if u != v]
        both = pairs + [(v, u) for u, v in pairs]
        edge_index = torch.tensor(both, dtype=torch.long).T.reshape(2, -1)
        out.append(Data(edge_index=edge_index, num_nodes=len(index)))
    return out


def from_pyg(data: list) -> list[nx.Graph]:
    """PyG ``Data`` objects -> simple undirected networkx graphs with nodes ``0..n-1``.

    Raises:
        InvalidValueError: an object without ``edge_index`` or with node indices outside
            ``0..num_nodes-1``.
    """
    graphs = []
    for k, d in enumerate(data):
        if not hasattr(d, "edge_index") or d.edge_index is None:
            raise InvalidValueError(f"item {k} is not a PyG Data with an edge_index")
        n = int(d.num_nodes)
        ei = d.edge_index
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
            raise InvalidValueError(f"item {k}: edge_index refers to nodes outside 0..{n - 1}")
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from((int(u), int(v)) for u, v in ei.T.tolist() if u != v)
        graphs.append(g)
    return graphs
