"""The graph domain: Energy Matching on dense, masked, symmetric adjacency relaxations.

A state is ``{"adj": (B, N, N) float, "mask": (B, N) bool}``: the continuous relaxation
of the adjacency and the node mask (a graph's ``n`` nodes first, padding after). The
space is :class:`~energyflow.spaces.SymmetricMasked` reading the mask from the state, so
every sampler and loss moves only the ``n (n - 1) / 2`` free entries of each graph, and
its adjacency stays symmetric with a zero diagonal.

Encoding and decoding (the documented rule):

* data: an edge is ``+1``, a non-edge between two real nodes ``-1``, the diagonal and
  every entry that touches padding ``0`` (centred like the Gaussian source);
* decoding: an edge ``i - j`` between real nodes wherever ``(A_ij + A_ji) / 2 > 0``, which
  is ``> 0.5`` on the ``{0, 1}`` scale.

Sources and couplings: noise copies each data graph's node mask
(``sample_source(like=batch)``), so the OT coupling of the trainer pairs only graphs of
equal size (it groups states by their carried leaves); new samples draw their node
counts from the training graphs' (:meth:`GraphDomain.sample_source` without ``like``).
Training draws (:meth:`GraphDomain.sample_data`) permute each graph's nodes uniformly at
random (``permute=True``): the default potential is permutation invariant, so the
density it can represent is the permutation-symmetrised data distribution, and the flow
is trained towards that.

Metrics (:meth:`GraphDomain.metrics`): MMD² of degree, clustering, orbit and spectral
statistics against the test split in the GDSS convention
(:func:`energyflow.domains.graph.metrics.mmd_table`), the fractions of unique and novel
graphs, and for ``planar`` and ``sbm`` validity and V.U.N.
(:mod:`energyflow.domains.graph.validity`).

Example:
    >>> import torch
    >>> d = GraphDomain("community_small")
    >>> x = d.sample_data(4, torch.Generator().manual_seed(0))
    >>> x["adj"].shape, x["mask"].dtype, d.max_nodes
    (torch.Size([4, 20, 20]), torch.bool, 20)
    >>> bool((x["adj"] == x["adj"].transpose(1, 2)).all())
    True
    >>> [g.number_of_nodes() for g in d.decode(d.test_data(3))] == [g.number_of_nodes() for g in d.test_graphs[:3]]
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.domains.base import Domain, subset
from energyflow.domains.graph.convert import dense_to_graphs, from_pyg, graphs_to_dense
from energyflow.domains.graph.data import GRAPH_DATASETS, GraphSplit, load_graphs
from energyflow.errors import InvalidValueError
from energyflow.spaces import ProductSpace, SymmetricMasked

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["GraphDomain", "encode", "load_graph_file", "save_graph_file", "split_graphs"]

#: Data sets whose generated graphs have a validity test (and so V.U.N.).
VALIDITY_OF = {"planar": "planar", "sbm": "sbm"}


def encode(graphs: list, max_nodes: int | None = None) -> dict[str, Tensor]:
    """Graphs -> a state ``{"adj": (B, N, N) float32 in {-1, 0, 1}, "mask": (B, N) bool}``.

    Edges are ``+1``, non-edges between real nodes ``-1``, the diagonal and padding ``0``.

    Example:
        >>> s = encode([nx.path_graph(3)], max_nodes=4)
        >>> s["adj"][0].tolist()
        [[0.0, 1.0, -1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    adj, mask = graphs_to_dense(graphs, max_nodes=max_nodes)
    n = adj.shape[-1]
    pair = mask.unsqueeze(1) * mask.unsqueeze(2) * (1 - torch.eye(n))
    return {"adj": torch.where(pair > 0, 2 * adj - 1, torch.zeros_like(adj)), "mask": mask.bool()}


def _pyg_safe_globals() -> list:
    from torch_geometric.data import Data
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]


def load_graph_file(path: str | os.PathLike[str]) -> list[nx.Graph]:
    """Graphs from a ``.pt`` file, loaded with ``torch.load(weights_only=True)``.

    The file holds a list of PyG ``Data`` objects (only PyG's ``Data`` classes are
    allowed through the safe loader, nothing else is unpickled), or a dict
    ``{"edge_index": [LongTensor (2, E), ...], "num_nodes": [int, ...]}``. This is what
    ``energyflow sample`` writes for the graph domain.

    Raises:
        FileNotFoundError: no such file.
        InvalidValueError: the file holds something else, or no graphs.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no graph file at {path}")
    with torch.serialization.safe_globals(_pyg_safe_globals()):
        try:
            obj = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # an unsafe or corrupt pickle: the loader's own message says which
            raise InvalidValueError(f"{path} is not a graph file energyflow can load safely: {err}") from err
    if isinstance(obj, dict) and "edge_index" in obj:
        from torch_geometric.data import Data

        counts = obj.get("num_nodes")
        if counts is None or len(counts) != len(obj["edge_index"]):
            raise InvalidValueError(f"{path}: 'num_nodes' must list one node count per edge_index")
        obj = [Data(edge_index=e, num_nodes=int(n)) for e, n in zip(obj["edge_index"], counts)]
    if not isinstance(obj, (list, tuple)) or not obj:
        raise InvalidValueError(f"{path} must hold a non-empty list of PyG Data graphs, got {type(obj).__name__}")
    return from_pyg(list(obj))


def save_graph_file(graphs: list, path: str | os.PathLike[str]) -> Path:
    """Writes graphs as a list of PyG ``Data`` to ``path`` atomically (what :func:`load_graph_file` reads)."""
    from energyflow.domains.graph.convert import to_pyg

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(to_pyg(list(graphs)), tmp)
    os.replace(tmp, path)
    return path


def split_graphs(graphs: list, test_fraction: float = 0.2, seed: int = 0, name: str = "custom") -> GraphSplit:
    """A user's graphs split into train and test after a permutation drawn with ``seed``.

    Args:
        graphs (list): networkx graphs or PyG ``Data`` objects (at least 2).
        test_fraction (float): share held out, in (0, 1); at least one graph each side.
        seed (int): seeds the permutation.
        name (str): the data set's name.
    """
    if not isinstance(graphs, (list, tuple)) or len(graphs) < 2:
        raise InvalidValueError("need a list of at least 2 graphs (one to train on, one to test against)")
    if not all(isinstance(g, nx.Graph) for g in graphs):
        graphs = from_pyg(list(graphs))
    graphs = [nx.convert_node_labels_to_integers(nx.Graph(g), ordering="sorted") for g in graphs]
    for g in graphs:
        g.remove_edges_from(list(nx.selfloop_edges(g)))
    if not 0 < float(test_fraction) < 1:
        raise InvalidValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(graphs))
    k = min(max(1, round(float(test_fraction) * len(graphs))), len(graphs) - 1)
    test, train = [graphs[i] for i in order[:k]], [graphs[i] for i in order[k:]]
    return GraphSplit(name, train, [], test, int(seed))


class DenseGraphDomain(Domain):
    """What the dense graph domains share (graphs, molecules): data draws, sources and splits.

    A subclass sets ``_train`` and ``_test`` (dict states with a bool ``"mask"`` leaf, real
    nodes first), ``dataset`` and ``permute``, and names its leaves: ``pair_keys``
    (``(B, N, N, ...)``, permuted on both node axes) and ``node_keys`` (``(B, N, ...)``).
    """

    unit: str = "graphs"
    pair_keys: tuple[str, ...] = ("adj",)
    node_keys: tuple[str, ...] = ()
    _train: dict[str, Tensor]
    _test: dict[str, Tensor]
    permute: bool

    def _check_n(self, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidValueError(f"n must be a positive integer, got {n!r}")
        return n

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` training indices drawn with replacement (torch's global stream without a generator)."""
        gdev = generator.device if generator is not None else None
        return torch.randint(self._train["mask"].shape[0], (n,), generator=generator, device=gdev).cpu()

    def sample_data(self, n: int, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> dict[str, Tensor]:
        """``n`` training states drawn with replacement, their nodes permuted at random (``permute``)."""
        from energyflow.domains.graph.coupling import permute_nodes

        n = self._check_n(n)
        out = tree.index(self._train, self._draw(n, generator))
        if self.permute:
            # Real nodes first in a uniformly random order, padding after: argsort of
            # uniform keys with the padding's keys pushed past every real one.
            gdev = generator.device if generator is not None else None
            mask = out["mask"]
            keys = torch.rand(*mask.shape, generator=generator, device=gdev).cpu() + (~mask).float() * 2
            perm = keys.argsort(dim=1)
            for k in self.pair_keys:
                out[k] = permute_nodes(out[k], perm, pairwise=True)
            for k in self.node_keys:
                out[k] = permute_nodes(out[k], perm, pairwise=False)
        return tree.to(out, device) if device is not None else out

    def sample_source(self, n: int | None = None, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None, like: dict | None = None) -> dict[str, Tensor]:
        """Gaussian noise on the free entries; masks copied from ``like`` or, for new
        samples, node counts drawn from the training states'."""
        keys = (*self.node_keys, *self.pair_keys, "mask")
        if like is None:
            idx = self._draw(self._check_n(n), generator)
            like = {k: torch.zeros_like(v[idx]) if v.is_floating_point() else v[idx] for k, v in self._train.items()}
            if generator is not None:
                like = tree.to(like, generator.device)
            n = None
        elif not isinstance(like, dict) or any(k not in like for k in keys):
            raise InvalidValueError(f"like must be a state with leaves {list(keys)}, got {tree.describe(like)}")
        return super().sample_source(n, generator, device, like)

    def train_data(self, n: int | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The training set as a state (unpermuted); ``n`` of it (the first, or drawn with ``generator``)."""
        return subset(self._train, n, generator, f"the {self.dataset} training split", self.unit)

    def test_data(self, n: int | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The test set as a state (the metrics' reference)."""
        return subset(self._test, n, generator, f"the {self.dataset} test split", self.unit)


class GraphDomain(DenseGraphDomain):
    """Unattributed graphs as dense masked states; data generated offline or the user's own.

    Args:
        dataset (str): ``"community_small"`` (default), ``"grid"``, ``"sbm"``, ``"planar"``
            (recipes and splits in :mod:`energyflow.domains.graph.data`), or the name of
            a user's set when ``path`` is given.
        source (str): only ``"gaussian"`` (standard noise on the free adjacency entries).
        seed (int): the master seed of the generated data set, or of the train/test split
            of a user's graphs.
        path (str | PathLike | None): a ``.pt`` file of the user's graphs
            (:func:`load_graph_file`); split by ``test_fraction`` and ``seed``.
        test_fraction (float): share of a user's graphs held out (ignored for the named
            data sets, which are split as their papers split them).
        max_nodes (int | None): padding size ``N`` (default: the largest graph).
        permute (bool): permute each training draw's nodes at random.

    Attributes:
        space (ProductSpace): ``{"adj": SymmetricMasked(N, mask="mask")}``.
        train_graphs, validation_graphs, test_graphs (list[nx.Graph]): the split.
        max_nodes (int): ``N``.
    """

    name = "graph"
    options = ("dataset", "source", "seed", "path", "test_fraction", "max_nodes", "permute")
    network_options = ("hidden", "depth", "walk_steps", "edge_layers", "edge_hidden", "aggregate", "power_steps")

    def __init__(self, dataset: str = "community_small", source: str = "gaussian", seed: int = 0,
                 path: str | os.PathLike[str] | None = None, test_fraction: float = 0.2,
                 max_nodes: int | None = None, permute: bool = True, *, _split: GraphSplit | None = None) -> None:
        if not isinstance(source, str) or source.lower() not in ("gaussian", "normal"):
            raise InvalidValueError(f"GraphDomain supports only source='gaussian', got {source!r}")
        self.source = "gaussian"
        self.permute = bool(permute)
        self.path = None if path is None else str(path)
        if _split is not None:
            split = _split
        elif path is not None:
            stem = Path(path).stem if dataset in (None, "", "community_small") else str(dataset)
            split = split_graphs(load_graph_file(path), test_fraction, seed, name=stem)
        else:
            if dataset not in GRAPH_DATASETS:
                raise InvalidValueError(
                    f"unknown graph data set {dataset!r}; choose one of {sorted(GRAPH_DATASETS)} or give path= "
                    "(a .pt file of your graphs)")
            split = load_graphs(dataset, seed=int(seed))
        self.dataset, self.seed, self.test_fraction = split.name, int(split.seed), float(test_fraction)
        self.train_graphs, self.validation_graphs, self.test_graphs = split.train, split.validation, split.test
        largest = max(g.number_of_nodes() for g in split.train + split.validation + split.test)
        if max_nodes is not None and int(max_nodes) < largest:
            raise InvalidValueError(f"max_nodes={max_nodes} is smaller than the largest graph ({largest} nodes)")
        self.max_nodes = int(max_nodes) if max_nodes is not None else largest
        self._train = encode(self.train_graphs, self.max_nodes)
        self._test = encode(self.test_graphs, self.max_nodes)
        self.space = ProductSpace({"adj": SymmetricMasked(self.max_nodes, mask="mask")})

    @classmethod
    def from_graphs(cls, graphs: list, test_fraction: float = 0.2, seed: int = 0, name: str = "custom",
                    **kwargs: Any) -> "GraphDomain":
        """A domain on the user's own graphs (networkx graphs or PyG ``Data``), split by :func:`split_graphs`.

        Example:
            >>> d = GraphDomain.from_graphs([nx.cycle_graph(k) for k in range(3, 13)], seed=1)
            >>> len(d.train_graphs), len(d.test_graphs), d.max_nodes
            (8, 2, 12)
        """
        return cls(dataset=name, seed=seed, test_fraction=test_fraction,
                   _split=split_graphs(graphs, test_fraction, seed, name), **kwargs)

    # -- network ---------------------------------------------------------------------

    def default_network(self, hidden: int = 64, depth: int = 3, walk_steps: int = 2, edge_layers: int = 2,
                        edge_hidden: int = 16, aggregate: str = "sum", power_steps: int = 0) -> nn.Module:
        """A fresh :class:`~energyflow.domains.graph.networks.DenseGINPotential` on the signed encoding (``(B,)`` energies)."""
        from energyflow.domains.graph.networks import DenseGINPotential

        return DenseGINPotential(hidden=hidden, depth=depth, walk_steps=walk_steps, signed=True,
                                 edge_layers=edge_layers, edge_hidden=edge_hidden, aggregate=aggregate,
                                 power_steps=power_steps)

    # -- decoding, metrics, plots --------------------------------------------------------

    def _state(self, samples: Any, what: str) -> dict[str, Tensor]:
        if not isinstance(samples, dict) or "adj" not in samples or "mask" not in samples:
            raise InvalidValueError(f"{what} must be a graph state {{'adj': (B, N, N), 'mask': (B, N)}}, "
                                    f"got {tree.describe(samples)}")
        return samples

    def decode(self, samples: dict[str, Tensor]) -> list[nx.Graph]:
        """States -> networkx graphs: an edge where the symmetrised relaxation is ``> 0``."""
        s = self._state(samples, "samples")
        return dense_to_graphs(s["adj"], s["mask"].float(), threshold=0.0)

    def _graphs(self, x: Any, what: str) -> list[nx.Graph]:
        if isinstance(x, (list, tuple)):
            if not x or not all(isinstance(g, nx.Graph) for g in x):
                raise InvalidValueError(f"{what} must be a non-empty list of networkx graphs or a graph state")
            return list(x)
        return self.decode(self._state(x, what))

    def metrics(self, samples: Any, reference: Any = None) -> dict[str, float]:
        """MMD² (GDSS convention) of degree, clustering, orbit and spectral statistics, uniqueness and novelty.

        Args:
            samples: a state or a list of networkx graphs.
            reference: the same kinds; default the test graphs.

        Returns:
            dict[str, float]: ``degree``, ``clustering``, ``orbit``, ``spectral`` (MMD²,
            lower is better), ``unique``, ``novel`` (fractions of the samples), and for
            planar and SBM data ``valid`` and ``vun``.
        """
        from energyflow.domains.graph import validity
        from energyflow.domains.graph.metrics import mmd_table

        graphs = self._graphs(samples, "samples")
        ref = self.test_graphs if reference is None else self._graphs(reference, "reference")
        out = dict(mmd_table(graphs, ref, convention="gdss"))
        check = VALIDITY_OF.get(self.dataset)
        if check is not None:
            out.update(validity.vun(graphs, self.train_graphs, validity.resolve_validity(check)))
        else:
            out["unique"] = validity.fraction_unique(graphs)
            out["novel"] = validity.fraction_novel(graphs, self.train_graphs)
        return {k: float(v) for k, v in out.items()}

    def save_samples(self, samples: Any, path: str | os.PathLike[str]) -> str:
        """Writes the decoded graphs as a list of PyG ``Data`` (:func:`save_graph_file`); returns a summary."""
        graphs = self._graphs(samples, "samples")
        save_graph_file(graphs, path)
        sizes = [g.number_of_nodes() for g in graphs]
        return f"{len(graphs)} graphs (PyG Data, {min(sizes)}-{max(sizes)} nodes)"

    def plot(self, samples: Any, reference: Any = None, ax: Any = None, ncol: int = 8,
             max_graphs: int = 16) -> "Figure":
        """Drawn graphs: a grid of samples and, below it, training graphs (or ``reference``).

        Args:
            samples: a state or a list of networkx graphs.
            reference: graphs to show below (default: training graphs).
            ax: unused (the grid makes its own figure); accepted for the protocol.
            ncol (int): graphs per row.
            max_graphs (int): cap on the graphs shown from each set.
        """
        from energyflow.plotting import plot_graph_grid

        graphs = self._graphs(samples, "samples")[:max_graphs]
        ref = (self.train_graphs if reference is None else self._graphs(reference, "reference"))[:max_graphs]
        return plot_graph_grid([("samples", graphs), (f"{self.dataset} training graphs" if reference is None
                                                      else "reference", ref)], ncol=ncol)
