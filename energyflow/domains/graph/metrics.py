"""Graph-generation metrics: MMD² between graph sets of per-graph statistics.

The field compares a set of generated graphs with the test graphs by the squared maximum
mean discrepancy of four per-graph statistics: the degree histogram, the histogram of the
clustering coefficients (100 bins on [0, 1]), the mean node-orbit counts of the 2-4-node
graphlets (:func:`orbit_features`, 15 numbers) and the histogram of the normalised
Laplacian's eigenvalues (:func:`spectral_histograms`, 200 bins on [-1e-5, 2]). MMD² is
the biased (V-statistic) estimate every code base below computes: ``mean k(x, x') + mean
k(y, y') - 2 mean k(x, y)``, diagonal terms included. The kernels, all ``exp(-D(x, y)^2 /
(2 sigma^2))`` for a distance ``D``:

* :func:`gaussian_emd_kernel`: ``D`` the earth mover's distance between histograms with
  ground cost ``|i - j| / distance_scaling`` between bins ``i, j``. In one dimension that
  is the L1 distance of the cumulative sums divided by ``distance_scaling``, which is what
  is computed here (the code bases call ``pyemd``; equal to it for equal masses).
* :func:`gaussian_tv_kernel`: ``D = |x - y|_1 / 2`` (total variation for histograms).
* :func:`gaussian_kernel`: ``D = |x - y|_2``, the plain Gaussian on vectors.

Vectors of different lengths are zero-padded at the end. "Normalised" below means each
histogram divided by its sum before the kernel (the code bases' ``is_hist=True``).

:func:`mmd_table` computes the four numbers under a named convention
(:data:`MMD_CONVENTIONS`):

``"gdss"`` -- GDSS (Jo et al. 2022), ``evaluation/stats.py`` (``degree_stats``,
``clustering_stats``, ``orbit_stats_all``, ``spectral_stats``), kernels from
``utils/loader.py::load_eval_settings``, MMD in ``evaluation/mmd.py::compute_mmd``
(histograms normalised by their exact sum); the GraphRNN recipe:

============  ===================  =====  ================  ==========
statistic     kernel               sigma  distance_scaling  normalised
============  ===================  =====  ================  ==========
degree        Gaussian EMD         1      1                 yes
clustering    Gaussian EMD         0.1    100 (the bins)    yes
orbit         Gaussian (L2)        30     --                no
spectral      Gaussian EMD         1      1                 yes
============  ===================  =====  ================  ==========

``"spectre"`` (alias ``"digress"``) -- SPECTRE (Martinkus et al. 2022),
``util/eval_helper.py`` with ``util/dist_helper.py``, default ``compute_emd=False``;
DiGress (Vignac et al. 2023) runs the same code, ``src/analysis/spectre_utils.py`` with
``src/analysis/dist_helper.py``. Every statistic uses the Gaussian TV kernel, and the
histograms are normalised by ``sum + 1e-6`` as their ``compute_mmd`` does:

============  ===================  =====  ==========
statistic     kernel               sigma  normalised
============  ===================  =====  ==========
degree        Gaussian TV          1      yes
clustering    Gaussian TV          0.1    yes
orbit         Gaussian TV          30     no (TV of the raw mean orbit counts)
spectral      Gaussian TV          1      yes
============  ===================  =====  ==========

As in those code bases, generated graphs without nodes are dropped before the MMD (their
``graph_pred_list_remove_empty``). The orbit counts come from
:func:`energyflow.domains.graph.orbits.node_orbit_counts` instead of the ORCA binary
they call (equal counts; see that module), the spectra from ``scipy.linalg.eigvalsh`` of
``networkx.normalized_laplacian_matrix`` as theirs.

Example:
    >>> import networkx as nx
    >>> same = mmd2(degree_histograms([nx.cycle_graph(5)]), degree_histograms([nx.cycle_graph(7)]),
    ...             gaussian_emd_kernel(sigma=1.0))
    >>> round(same, 12)                               # every node has degree 2 in both
    0.0
    >>> table = mmd_table([nx.cycle_graph(6)] * 2, [nx.cycle_graph(8)] * 2, convention="gdss")
    >>> sorted(table), round(table["degree"], 12)     # cycles differ only in their spectra
    (['clustering', 'degree', 'orbit', 'spectral'], 0.0)
    >>> table["spectral"] > 0
    True
"""

from __future__ import annotations

from typing import Callable, Sequence

import attrs
import networkx as nx
import numpy as np

from energyflow.domains.graph.orbits import node_orbit_counts
from energyflow.errors import InvalidValueError

__all__ = ["degree_histograms", "clustering_histograms", "orbit_features", "spectral_histograms",
           "HistogramKernel", "gaussian_emd_kernel", "gaussian_tv_kernel", "gaussian_kernel", "mmd2",
           "MMDConvention", "MMD_CONVENTIONS", "mmd_table", "GDSS_SIGMA"]

# The GDSS/GraphRNN bandwidths (degree and clustering: Gaussian EMD; orbit: Gaussian L2).
GDSS_SIGMA = {"degree": 1.0, "clustering": 0.1, "orbit": 30.0, "spectral": 1.0}


# ----------------------------------------------------------------------------- statistics

def degree_histograms(graphs: Sequence[nx.Graph]) -> list[np.ndarray]:
    """``networkx.degree_histogram`` of each graph: counts of degree 0, 1, ..., max (float64 counts)."""
    return [np.asarray(nx.degree_histogram(g), dtype=np.float64) for g in graphs]


def clustering_histograms(graphs: Sequence[nx.Graph], bins: int = 100) -> list[np.ndarray]:
    """Histogram of the clustering coefficients in ``bins`` equal bins of [0, 1]: counts, ``(bins,)``."""
    out = []
    for g in graphs:
        values = list(nx.clustering(g).values())
        hist, _ = np.histogram(values, bins=bins, range=(0.0, 1.0), density=False)
        out.append(hist.astype(np.float64))
    return out


def _require_nodes(g: nx.Graph, what: str) -> int:
    n = g.number_of_nodes()
    if n == 0:
        raise InvalidValueError(f"{what} of a graph without nodes is undefined")
    return n


def orbit_features(graphs: Sequence[nx.Graph]) -> list[np.ndarray]:
    """Per graph, the 15 ORCA node-orbit counts summed over the nodes and divided by the node count.

    This is the vector GraphRNN, GDSS and SPECTRE compare in their orbit MMD
    (``orbit_stats_all``); orbit ``k`` is numbered as in :mod:`.orbits`.

    Args:
        graphs (Sequence[nx.Graph]): simple undirected graphs with at least one node.

    Returns:
        list[np.ndarray]: one float64 vector of shape ``(15,)`` per graph.

    Raises:
        InvalidValueError: a graph without nodes (or not simple).

    Example:
        >>> import networkx as nx
        >>> orbit_features([nx.complete_graph(4)])[0][[0, 3, 14]].tolist()  # degree, triangles, K4 per node
        [3.0, 3.0, 1.0]
    """
    out = []
    for g in graphs:
        n = _require_nodes(g, "the orbit features")
        out.append(node_orbit_counts(g).sum(axis=0) / n)
    return out


def spectral_histograms(graphs: Sequence[nx.Graph], bins: int = 200) -> list[np.ndarray]:
    """Normalised histogram of the eigenvalues of each graph's normalised Laplacian.

    The eigenvalues (``scipy.linalg.eigvalsh`` of ``networkx.normalized_laplacian_matrix``)
    lie in [0, 2]; they are counted in ``bins`` equal bins of ``[-1e-5, 2]`` and the counts
    divided by their sum, as GDSS's and SPECTRE's ``spectral_worker``.

    Args:
        graphs (Sequence[nx.Graph]): graphs with at least one node.
        bins (int): number of bins.

    Returns:
        list[np.ndarray]: one float64 vector of shape ``(bins,)`` per graph, summing to 1.

    Raises:
        InvalidValueError: a graph without nodes, or ``bins < 1``.

    Example:
        >>> import networkx as nx
        >>> h = spectral_histograms([nx.complete_graph(3)])[0]   # eigenvalues 0, 1.5, 1.5
        >>> h.shape, float(h[0]), float(h[150])
        ((200,), 0.3333333333333333, 0.6666666666666666)
    """
    from scipy.linalg import eigvalsh  # scipy is part of the graph extra (networkx needs it here too)

    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InvalidValueError(f"bins must be an integer >= 1, got {bins!r}")
    out = []
    for g in graphs:
        _require_nodes(g, "the spectrum")
        eigs = eigvalsh(nx.normalized_laplacian_matrix(g).toarray())
        hist, _ = np.histogram(eigs, bins=int(bins), range=(-1e-5, 2.0), density=False)
        out.append(hist / hist.sum())
    return out


# ----------------------------------------------------------------------------- kernels

def _emd_distances(x: np.ndarray, ys: np.ndarray, scaling: float) -> np.ndarray:
    return np.abs(np.cumsum(ys - x, axis=-1)).sum(axis=-1) / scaling


def _tv_distances(x: np.ndarray, ys: np.ndarray, scaling: float) -> np.ndarray:
    return 0.5 * np.abs(ys - x).sum(axis=-1)


def _l2_distances(x: np.ndarray, ys: np.ndarray, scaling: float) -> np.ndarray:
    return np.sqrt(((ys - x) ** 2).sum(axis=-1))


# distance name -> D(x, rows of ys) for one x against many
_DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "emd": _emd_distances,
    "tv": _tv_distances,
    "l2": _l2_distances,
}


def _stack(vectors: Sequence[np.ndarray], length: int, normalise: bool) -> np.ndarray:
    out = np.zeros((len(vectors), length), dtype=np.float64)
    for i, v in enumerate(vectors):
        v = np.asarray(v, dtype=np.float64).ravel()
        if normalise:
            s = v.sum()
            if not s > 0:
                raise InvalidValueError("a histogram is empty (a graph without nodes)")
            v = v / s
        out[i, :len(v)] = v
    return out


@attrs.frozen
class HistogramKernel:
    """``k(x, y) = exp(-D(x, y)^2 / (2 sigma^2))`` on zero-padded vectors; use the factories below.

    Attributes:
        distance (str): ``"emd"`` (1-D earth mover's distance, ground cost ``|i - j| /
            distance_scaling``), ``"tv"`` (``|x - y|_1 / 2``) or ``"l2"`` (``|x - y|_2``).
        sigma (float): bandwidth, > 0.
        distance_scaling (float): bins per unit of ground distance (EMD only), > 0.
        normalise (bool): divide each vector by its sum first (histograms -> pmfs). The
            EMD formula assumes equal masses, so pass pmfs when this is off.
    """

    distance: str
    sigma: float = 1.0
    distance_scaling: float = 1.0
    normalise: bool = True

    def __attrs_post_init__(self) -> None:
        if self.distance not in _DISTANCES:
            raise InvalidValueError(f"unknown distance {self.distance!r}; choose one of {sorted(_DISTANCES)}")
        if not (np.isfinite(self.sigma) and self.sigma > 0) or not (np.isfinite(self.distance_scaling)
                                                                   and self.distance_scaling > 0):
            raise InvalidValueError(f"sigma and distance_scaling must be finite and > 0, got {self.sigma}, "
                                    f"{self.distance_scaling}")

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        """The kernel value of two vectors (any lengths)."""
        return float(self.gram([x], [y])[0, 0])

    def gram(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
        """All kernel values between two sets: shape ``(len(xs), len(ys))``."""
        length = max([len(np.ravel(v)) for v in [*xs, *ys]], default=0)
        xm, ym = _stack(xs, length, self.normalise), _stack(ys, length, self.normalise)
        dist = _DISTANCES[self.distance]
        out = np.empty((len(xm), len(ym)))
        for i, x in enumerate(xm):  # one row at a time: memory len(ys) * length
            d = dist(x, ym, self.distance_scaling)
            out[i] = np.exp(-d * d / (2 * self.sigma * self.sigma))
        return out


def gaussian_emd_kernel(sigma: float = 1.0, distance_scaling: float = 1.0,
                        normalise: bool = True) -> HistogramKernel:
    """``k(p, q) = exp(-EMD^2 / (2 sigma^2))``, ground cost ``|i - j| / distance_scaling``.

    On histograms normalised to sum 1 (unless ``normalise`` is off: then pass pmfs).
    """
    return HistogramKernel("emd", sigma, distance_scaling, normalise)


def gaussian_tv_kernel(sigma: float = 1.0, normalise: bool = True) -> HistogramKernel:
    """``k(p, q) = exp(-TV^2 / (2 sigma^2))``, ``TV = |p - q|_1 / 2``, on (normalised) histograms."""
    return HistogramKernel("tv", sigma, 1.0, normalise)


def gaussian_kernel(sigma: float = 1.0, normalise: bool = False) -> HistogramKernel:
    """The plain Gaussian ``k(x, y) = exp(-|x - y|_2^2 / (2 sigma^2))`` on (by default raw) vectors.

    Example:
        >>> import numpy as np
        >>> round(gaussian_kernel(sigma=30.0)(np.array([0.0, 3.0]), np.array([4.0])), 6)  # |(-4, 3)| = 5
        0.986207
    """
    return HistogramKernel("l2", sigma, 1.0, normalise)


def mmd2(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
         kernel: Callable[[np.ndarray, np.ndarray], float]) -> float:
    """Biased MMD² between two sets of vectors (diagonal terms included, as GDSS and SPECTRE).

    Args:
        xs, ys (Sequence[np.ndarray]): the two sets, each vector 1-D (lengths may differ).
        kernel: a :class:`HistogramKernel` (vectorised) or any ``k(x, y) -> float``.

    Returns:
        float: ``mean k(xs, xs) + mean k(ys, ys) - 2 mean k(xs, ys)``.

    Raises:
        InvalidValueError: an empty set.
    """
    if len(xs) == 0 or len(ys) == 0:
        raise InvalidValueError("mmd2 needs two non-empty sets")
    gram = getattr(kernel, "gram", None)
    if gram is None:
        def gram(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
            return np.array([[kernel(p, q) for q in b] for p in a], dtype=np.float64)

    return float(gram(xs, xs).mean() + gram(ys, ys).mean() - 2 * gram(xs, ys).mean())


# ----------------------------------------------------------------------------- conventions

@attrs.frozen
class _Statistic:
    features: Callable[[Sequence[nx.Graph]], list[np.ndarray]]
    kernel: HistogramKernel  # applied to the vectors as given (normalise=False)
    is_hist: bool            # normalise by sum + hist_eps before the kernel


@attrs.frozen
class MMDConvention:
    """How one code base computes its MMD table.

    Attributes:
        name (str): the convention's name.
        source (str): the files it follows.
        statistics (dict): statistic name -> features, kernel, whether normalised.
        hist_eps (float): the normalisation divides by ``sum + hist_eps``.
    """

    name: str
    source: str
    statistics: dict[str, _Statistic]
    hist_eps: float = 0.0


_GDSS = MMDConvention(
    "gdss", "harryjo97/GDSS evaluation/stats.py, evaluation/mmd.py, utils/loader.py::load_eval_settings",
    {
        "degree": _Statistic(degree_histograms, gaussian_emd_kernel(1.0, 1.0, normalise=False), True),
        "clustering": _Statistic(clustering_histograms, gaussian_emd_kernel(0.1, 100.0, normalise=False),
                                 True),
        "orbit": _Statistic(orbit_features, gaussian_kernel(30.0), False),
        "spectral": _Statistic(spectral_histograms, gaussian_emd_kernel(1.0, 1.0, normalise=False), True),
    },
)

_SPECTRE = MMDConvention(
    "spectre", "KarolisMart/SPECTRE util/eval_helper.py, util/dist_helper.py (compute_emd=False); "
               "cvignac/DiGress src/analysis/spectre_utils.py, src/analysis/dist_helper.py",
    {
        "degree": _Statistic(degree_histograms, gaussian_tv_kernel(1.0, normalise=False), True),
        "clustering": _Statistic(clustering_histograms, gaussian_tv_kernel(0.1, normalise=False), True),
        "orbit": _Statistic(orbit_features, gaussian_tv_kernel(30.0, normalise=False), False),
        "spectral": _Statistic(spectral_histograms, gaussian_tv_kernel(1.0, normalise=False), True),
    },
    hist_eps=1e-6,
)

# convention name -> how it computes degree / clustering / orbit / spectral MMD²
MMD_CONVENTIONS: dict[str, MMDConvention] = {"gdss": _GDSS, "spectre": _SPECTRE, "digress": _SPECTRE}


def _normalised(vectors: list[np.ndarray], eps: float) -> list[np.ndarray]:
    return [v / (v.sum() + eps) for v in vectors]


def mmd_table(generated: Sequence[nx.Graph], reference: Sequence[nx.Graph],
              convention: str = "gdss") -> dict[str, float]:
    """MMD² of the degree, clustering, orbit and spectral statistics, as a code base computes them.

    Args:
        generated (Sequence[nx.Graph]): the generated graphs; those without nodes are dropped
            (as GDSS and SPECTRE drop them).
        reference (Sequence[nx.Graph]): the reference (test) graphs, each with a node.
        convention (str): a key of :data:`MMD_CONVENTIONS` (``"gdss"``, ``"spectre"``,
            ``"digress"``); the module docstring lists what each uses.

    Returns:
        dict[str, float]: ``degree``, ``clustering``, ``orbit``, ``spectral``: the biased
        MMD² (lower is better; 0 for equal statistics).

    Raises:
        InvalidValueError: an unknown convention, no reference graphs, no generated graph
            with a node, or a reference graph without nodes.

    Example:
        >>> import networkx as nx
        >>> stars = [nx.star_graph(k) for k in range(3, 7)]
        >>> table = mmd_table(stars, stars, convention="spectre")
        >>> all(abs(v) < 1e-12 for v in table.values())
        True
    """
    if convention not in MMD_CONVENTIONS:
        raise InvalidValueError(f"unknown MMD convention {convention!r}; "
                                f"choose one of {sorted(MMD_CONVENTIONS)}")
    spec = MMD_CONVENTIONS[convention]
    generated = [g for g in generated if g.number_of_nodes() > 0]
    reference = list(reference)
    if not generated or not reference:
        raise InvalidValueError("mmd_table needs non-empty lists of graphs (generated graphs without nodes "
                                f"are dropped): got {len(generated)} generated, {len(reference)} reference")
    if any(g.number_of_nodes() == 0 for g in reference):
        raise InvalidValueError("a reference graph has no nodes")
    out = {}
    for name, stat in spec.statistics.items():
        gen, ref = stat.features(generated), stat.features(reference)
        if stat.is_hist:
            gen, ref = _normalised(gen, spec.hist_eps), _normalised(ref, spec.hist_eps)
        out[name] = mmd2(gen, ref, stat.kernel)
    return out
