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

__all__ = ["PermutationOT", "align_to", "alignment", "channel_alignment", "permute_nodes"]


def channel_alignment(a0: Tensor, a1: Tensor, mask: Tensor, x0: Tensor | None = None, x1: Tensor | None = None,
                      maxiter: int = 10, tol: float = 1e-3) -> Tensor:
    """Node orders ``(B, N)`` relabelling attributed graphs ``(a1, x1)`` onto ``(a0, x0)``: FAQ over channels.

    Minimises the full squared distance ``sum_c ||a0_c - P a1_c P^T||^2 + ||x0 - P x1||^2``
    over permutations ``P``, i.e. maximises ``sum_c <a0_c, P a1_c P^T> + <x0 x1^T, P>``:
    SciPy's FAQ (:func:`scipy.optimize.quadratic_assignment`) takes one matrix pair and no
    linear term, so this is the same Frank-Wolfe algorithm (Vogelstein et al. 2015) on the
    sum over edge channels plus the node-feature term, batched over graphs: start at the
    barycentre of the doubly stochastic matrices, step to the linear assignment
    (:func:`scipy.optimize.linear_sum_assignment`) of the gradient with an exact line
    search on the quadratic, and round the final matrix to the nearest permutation.

    Args:
        a0, a1 (Tensor): ``(B, N, N, C)`` symmetric edge channels (noise, data).
        mask (Tensor): ``(B, N)`` bool, real nodes first (equal in both).
        x0, x1 (Tensor | None): ``(B, N, F)`` node features, or None.
        maxiter (int): Frank-Wolfe iterations at most (10: on QM9 batches of 128 it removes 98 % of what
            30 do, in a third of the time: 0.07 s).
        tol (float): stop once every graph's step moves P by less than this (Frobenius / sqrt(n)).

    Returns:
        Tensor: ``(B, N)`` long; ``x1[b][perm[b]]`` is the relabelled graph.
    """
    from scipy.optimize import linear_sum_assignment

    a0, a1 = a0.detach().double().cpu(), a1.detach().double().cpu()
    b_size, n_max = mask.shape
    sizes = mask.sum(1).cpu()
    real = (mask.unsqueeze(1) & mask.unsqueeze(2)).cpu().double()
    lin = torch.zeros(b_size, n_max, n_max, dtype=torch.float64)
    if x0 is not None:
        lin = x0.detach().double().cpu() @ x1.detach().double().cpu().transpose(1, 2)
    lin = lin * real
    A0 = a0.permute(0, 3, 1, 2)  # (B, C, N, N)
    A1 = a1.permute(0, 3, 1, 2)
    P = real / sizes.clamp_min(1).double()[:, None, None]  # barycentre on each graph's real block

    def grad(p: Tensor) -> Tensor:
        return 2 * (A0 @ p.unsqueeze(1) @ A1).sum(1) + lin  # A0, A1 symmetric

    def lap(m: Tensor) -> Tensor:
        q = torch.zeros_like(m)
        for b in range(b_size):
            n = int(sizes[b])
            rows, cols = linear_sum_assignment(m[b, :n, :n].numpy(), maximize=True)
            q[b, rows, cols] = 1.0
        return q

    for _ in range(int(maxiter)):
        g = grad(P)
        d = lap(g) - P
        slope = (g * d).sum((1, 2))
        curve = (A0 * (d.unsqueeze(1) @ A1 @ d.transpose(1, 2).unsqueeze(1))).sum((1, 2, 3))
        alpha = torch.where(curve < 0, (-slope / (2 * curve.clamp(max=-1e-30))).clamp(0, 1),
                            ((curve + slope) > 0).double())
        P = P + alpha[:, None, None] * d
        moved = alpha * d.flatten(1).norm(dim=1) / sizes.clamp_min(1).double().sqrt()
        if bool((moved < tol).all()):
            break
    perm_matrix = lap(P)
    perms = torch.arange(n_max).repeat(b_size, 1)
    for b in range(b_size):
        n = int(sizes[b])
        perms[b, :n] = perm_matrix[b, :n, :n].argmax(1)
    return perms


def alignment(s0: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """Node orders ``(B, N)`` relabelling each ``s1[b]`` onto ``s0[b]`` by FAQ (identity on padding).

    Args:
        s0 (Tensor): ``(B, N, N)`` noise pictures.
        s1 (Tensor): ``(B, N, N)`` data pictures (same masks).
        mask (Tensor): ``(B, N)`` bool, real nodes first.

    Returns:
        Tensor: ``(B, N)`` long; ``x1[b][perm[b]]`` is the relabelled graph.
    """
    from scipy.optimize import quadratic_assignment

    b_size, n_max = mask.shape
    perms = torch.arange(n_max).repeat(b_size, 1)
    a0 = s0.detach().double().cpu().numpy()
    a1 = s1.detach().double().cpu().numpy()
    for b, n in enumerate(int(k) for k in mask.sum(1).tolist()):
        if n < 2:  # one node: a single labelling
            continue
        res = quadratic_assignment(a0[b, :n, :n], a1[b, :n, :n], method="faq",
                                   options={"maximize": True, "rng": np.random.default_rng(0)})  # barycentre start: no draw
        perms[b, :n] = torch.as_tensor(res.col_ind)
    return perms


def permute_nodes(state: Tensor, perms: Tensor, pairwise: bool) -> Tensor:
    """``state`` ``(B, N, ...)`` (or ``(B, N, N, ...)`` when ``pairwise``) with its nodes reordered by ``perms``."""
    perms = perms.to(state.device)
    rows = torch.arange(state.shape[0], device=state.device)[:, None]
    out = state[rows, perms]
    if pairwise:
        out = out[rows[:, :, None], torch.arange(perms.shape[1], device=state.device)[None, :, None], perms[:, None, :]]
    return out


def align_to(x0: Tensor, x1: Tensor, mask: Tensor) -> Tensor:
    """Relabels the real nodes of each ``x1[b]`` to bring it closest to ``x0[b]`` (FAQ); padding stays.

    Args:
        x0 (Tensor): ``(B, N, N)`` noise adjacencies.
        x1 (Tensor): ``(B, N, N)`` data adjacencies (same masks).
        mask (Tensor): ``(B, N)`` bool, real nodes first.

    Returns:
        Tensor: ``(B, N, N)``, ``x1`` with each graph's real nodes permuted.
    """
    return permute_nodes(x1, alignment(x0, x1, mask), pairwise=True)


@attrs.frozen
class PermutationOT:
    """Exact minibatch OT within equal node masks, then FAQ alignment of every pair.

    Each data graph is relabelled onto its noise partner: its adjacency (``key``, plain
    or with edge channels) and every node leaf in ``node_keys`` that the state has (atom
    types of molecules) are permuted together. A plain adjacency is aligned by SciPy's
    FAQ (:func:`alignment`); edge channels and node features by the same algorithm on
    the full squared distance (:func:`channel_alignment`).

    Args:
        key (str): the adjacency leaf of the state.
        mask_key (str): the node-mask leaf (real nodes first).
        node_keys (tuple[str, ...]): node-feature leaves ``(B, N, F)`` permuted with it.
    """

    key: str = "adj"
    mask_key: str = "mask"
    node_keys: tuple[str, ...] = ("x",)

    def pair(self, x0: dict, x1: dict, generator: torch.Generator | None = None) -> tuple[dict, dict]:
        """Pairs ``x0`` with ``x1`` (graph states) and relabels each data graph onto its noise partner."""
        for x, what in ((x0, "x0"), (x1, "x1")):
            if not isinstance(x, dict) or self.key not in x or self.mask_key not in x:
                raise InvalidValueError(f"PermutationOT pairs graph states {{{self.key!r}, {self.mask_key!r}}}; "
                                        f"{what} is not one")
        a, b = ExactOT().pair(x0, x1, generator)
        if not torch.equal(a[self.mask_key], b[self.mask_key]):  # pragma: no cover - ExactOT groups by mask
            raise InvalidValueError("paired graphs differ in their node masks")
        nodes = [k for k in self.node_keys if k in b]
        mask = b[self.mask_key].bool()
        if b[self.key].dim() == 3 and not nodes:  # plain graphs: SciPy's FAQ
            perms = alignment(a[self.key], b[self.key], mask)
        else:
            feat0 = torch.cat([a[k].reshape(*a[k].shape[:2], -1) for k in nodes], -1) if nodes else None
            feat1 = torch.cat([b[k].reshape(*b[k].shape[:2], -1) for k in nodes], -1) if nodes else None
            a0, a1 = (v if v.dim() == 4 else v.unsqueeze(-1) for v in (a[self.key], b[self.key]))
            perms = channel_alignment(a0, a1, mask, feat0, feat1)
        out = {**b, self.key: permute_nodes(b[self.key], perms, pairwise=True)}
        for k in nodes:
            out[k] = permute_nodes(b[k], perms, pairwise=False)
        return a, out
