"""The graph domain (issue 11), being built: so far its data sets (:mod:`.data`).

``energyflow.domains.graph.data`` generates the community_small, grid, sbm and planar
data sets offline from documented recipes and fixed seeds, split as their papers split
them. The domain itself (dense padded states, the PyG potential, the metrics) is not
registered yet.
"""

from energyflow.domains.graph.data import GRAPH_DATASETS, GraphSplit, load_graphs

__all__ = ["GRAPH_DATASETS", "GraphSplit", "load_graphs"]
