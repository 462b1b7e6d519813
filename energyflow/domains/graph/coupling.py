"""Permutation-aligned OT coupling for graph states: each data graph's nodes matched to its noise partner.

The data distribution of a permutation-invariant model is the permutation-symmetrised
one: every relabelling of a training graph is a data point. Minibatch OT on the raw
adjacencies sees one arbitrary labelling per draw, so the flow has to carry noise to a
community (say) placed on random nodes, and regresses on the average over all
placements: it learns the edge density but not the structure. Equivariant flow matching
(Klein, Krämer and Noé 2023, for molecules) instead aligns each pair: the data graph is
relabelled to be as close as possible to its noise partner,

    min over permutations P of || x0 - P x1 P^T ||_F^2  =  max over P of trace(x0 P x1 P^T),

a quadratic assignment problem, solved approximately with SciPy's FAQ algorithm
(:func:`scipy.optimize.quadratic_assignment`, Vogelstein et al. 2015; about 0.4 ms for 20
nodes) on each graph's real nodes. The relabelling is a function of the noise that
commutes with node permutations, so the aligned data keep their law (the symmetrised
data distribution) and the coupling stays a valid coupling of source and data; the paths
get straighter, and the noise's own random structure chooses which nodes form a
community.

Pairs are first formed by exact OT within equal node masks
(:class:`~energyflow.training.coupling.ExactOT`), then aligned.

Example:
    >>> import torch, networkx as nx
    >>> from energyflow.domains.graph.domain import encode
    >>> x1 = encode([nx.barbell_graph(5, 0)])                       # two 5-cliques joined by an edge
    >>> z = torch.randn(1, 10, 10, generator=torch.Generator().manual_seed(0))
    >>> x0 = {"adj": (z + z.transpose(1, 2)) / 2 * (1 - torch.eye(10)), "mask": x1["mask"]}
    >>> a, b = PermutationOT().pair(x0, x1, generator=torch.Generator().manual_seed(0))
    >>> bool((a["adj"] - b["adj"]).norm() < (a["adj"] - x1["adj"]).norm())   # closer to its noise partner
    True
    >>> nx.is_isomorphic(nx.from_numpy_array((b["adj"][0] > 0).numpy()), nx.barbell_graph(5, 0))  # same graph
    True
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
from torch import Tensor

from energyflow.errors import InvalidValueError
from energyflow.training.coupling import ExactOT

__all__ = ["PermutationOT", "align_to"]


def align_to(x0: Tensor, x1: Tensor, mask: Tensor) -> Tensor:
    """Relabels the real nodes of each ``x1[b]`` to bring it closest to ``x0[b]`` (FAQ); padding stays.

    Args:
        x0 (Tensor): ``(B, N, N)`` noise adjacencies.
        x1 (Tensor): ``(B, N, N)`` data adjacencies (same masks).
        mask (Tensor): ``(B, N)`` bool, real nodes first.

    Returns:
        Tensor: ``(B, N, N)``, ``x1`` with each graph's real nodes permuted.
    """
    from scipy.optimize import quadratic_assignment

    out = x1.clone()
    a0 = x0.detach().double().cpu().numpy()
    a1 = x1.detach().double().cpu().numpy()
    sizes = mask.sum(1).tolist()
    for b, n in enumerate(int(s) for s in sizes):
        if n < 3:  # one or two nodes: every labelling is the same graph
            continue
        res = quadratic_assignment(a0[b, :n, :n], a1[b, :n, :n], method="faq",
                                  options={"maximize": True, "rng": np.random.default_rng(0)})  # barycentre start: no draw
        perm = torch.as_tensor(res.col_ind, device=x1.device)
        out[b, :n, :n] = x1[b, :n, :n][perm][:, perm]
    return out


@attrs.frozen
class PermutationOT:
    """Exact minibatch OT within equal node masks, then :func:`align_to` on every pair.

    Args:
        key (str): the adjacency leaf of the state.
        mask_key (str): the node-mask leaf (real nodes first).
    """

    key: str = "adj"
    mask_key: str = "mask"

    def pair(self, x0: dict, x1: dict, generator: torch.Generator | None = None) -> tuple[dict, dict]:
        """Pairs ``x0`` with ``x1`` (graph states) and relabels each data graph onto its noise partner."""
        for x, what in ((x0, "x0"), (x1, "x1")):
            if not isinstance(x, dict) or self.key not in x or self.mask_key not in x:
                raise InvalidValueError(f"PermutationOT pairs graph states {{{self.key!r}, {self.mask_key!r}}}; "
                                        f"{what} is not one")
        a, b = ExactOT().pair(x0, x1, generator)
        if not torch.equal(a[self.mask_key], b[self.mask_key]):  # pragma: no cover - ExactOT groups by mask
            raise InvalidValueError("paired graphs differ in their node masks")
        return a, {**b, self.key: align_to(a[self.key], b[self.key], b[self.mask_key].bool())}
