"""The graph domain (issue 11): data, dense states, the default potential, metrics.

* :mod:`.data` generates the community_small, grid, sbm and planar data sets offline from
  documented recipes and fixed seeds, split as their papers split them;
* :mod:`.convert` pads graphs into dense states (adjacency ``(B, N, N)``, mask ``(B, N)``),
  decodes them by a threshold, and converts to and from PyG ``Data``;
* :mod:`.domain` is :class:`GraphDomain` (registered as ``"graph"``): the signed encoding,
  sources that copy node masks, node counts for new samples, user graphs and files;
* :mod:`.networks` holds the default potential, dense GIN layers of PyG and PPGN-style
  pair layers on the relaxed adjacency (imported on use: it needs ``torch_geometric``);
* :mod:`.metrics` and :mod:`.orbits`: degree, clustering, 4-node orbit and spectral
  statistics and the MMD² of the field's two kernel conventions (GDSS, SPECTRE/DiGress);
* :mod:`.validity`: planar and SBM validity, uniqueness, novelty and V.U.N.;
* :mod:`.coupling`: ``graph_ot``, exact OT within equal sizes with each data graph
  relabelled onto its noise partner (FAQ quadratic assignment);
* :mod:`.conditional`: completion, property steering and repulsion with the DSL.
"""

from energyflow.domains.graph.convert import dense_to_graphs, from_pyg, graphs_to_dense, to_pyg
from energyflow.domains.graph.data import GRAPH_DATASETS, GraphSplit, load_graphs
from energyflow.domains.graph.domain import GraphDomain, encode, load_graph_file, save_graph_file, split_graphs

__all__ = ["GRAPH_DATASETS", "GraphDomain", "GraphSplit", "dense_to_graphs", "encode", "from_pyg", "graphs_to_dense",
           "load_graph_file", "load_graphs", "save_graph_file", "split_graphs", "to_pyg"]
