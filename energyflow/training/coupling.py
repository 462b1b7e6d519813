"""Minibatch couplings between source (noise) and data batches.

A coupling reorders a source batch ``x0`` and a data batch ``x1`` into pairs. Exact OT
solves the assignment with POT's network simplex (``ot.emd``) on the squared Euclidean
cost; Sinkhorn solves the entropic problem on the cost normalised by its maximum (so a
fixed ``reg`` converges whatever the data scale); independent pairing keeps the order.
Pairs are drawn from the plan with an explicit ``torch.Generator``.

Example:
    >>> import torch
    >>> x0 = torch.tensor([[0.0], [10.0]]); x1 = torch.tensor([[11.0], [1.0]])
    >>> a, b = ExactOT().pair(x0, x1, generator=torch.Generator().manual_seed(0))
    >>> sorted(zip(a.flatten().tolist(), b.flatten().tolist()))
    [(0.0, 1.0), (10.0, 11.0)]
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs
import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import Tensor

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.tree import State
from energyflow.validation import real


@runtime_checkable
class Coupling(Protocol):
    def pair(self, x0: State, x1: State, generator: torch.Generator | None = None) -> tuple[State, State]:
        """Returns paired batches ``(x0[i], x1[j])`` of shape ``(B, *event)`` each (or pytrees)."""
        ...


def _event_shapes(x: State) -> list[tuple[int, ...]]:
    return [tuple(leaf.shape[1:]) for leaf in pytree.tree_flatten(x)[0] if isinstance(leaf, Tensor)]


def _check(x0: State, x1: State) -> None:
    if _event_shapes(x0) != _event_shapes(x1) or pytree.tree_flatten(x0)[1] != pytree.tree_flatten(x1)[1]:
        raise InvalidValueError(f"source and data event shapes differ: {tree.describe(x0)} vs {tree.describe(x1)}")
    if tree.batch_size(x0) == 0 or tree.batch_size(x1) == 0:
        raise InvalidValueError("cannot couple empty batches")


def squared_cost(x0: State, x1: State) -> np.ndarray:
    """Squared Euclidean cost matrix ``(B0, B1)`` in float64 NumPy (what POT's solvers take).

    For states on one of energyflow's linear spaces this is already the space's metric
    (``space.sqnorm`` is the ambient norm restricted to the space), so no space is needed.
    For pytree states the cost sums over the coordinate leaves.
    """
    import ot

    a = tree.ravel(tree.detach(x0)).double().cpu().numpy()
    b = tree.ravel(tree.detach(x1)).double().cpu().numpy()
    return ot.dist(a, b, metric="sqeuclidean")


def structure_groups(x0: State, x1: State) -> list[tuple[Tensor, Tensor]] | None:
    """Index groups of source and data states with equal carried leaves (masks, node counts).

    A graph may only be paired with noise of its own size: its carried leaves say which
    nodes exist. Returns None for states without carried leaves (one group: everything).

    Raises:
        InvalidValueError: a structure occurs a different number of times in the two
            batches (draw the source like the data batch: ``domain.sample_source(like=x1)``).
    """
    carried0 = [leaf for leaf in pytree.tree_flatten(x0)[0] if isinstance(leaf, Tensor) and not tree.is_coordinate(leaf)]
    if not carried0:
        return None
    carried1 = [leaf for leaf in pytree.tree_flatten(x1)[0] if isinstance(leaf, Tensor) and not tree.is_coordinate(leaf)]

    def keys(leaves: list[Tensor]) -> list[bytes]:
        rows = torch.cat([leaf.reshape(leaf.shape[0], -1).to(torch.int64).cpu() for leaf in leaves], dim=1)
        return [r.numpy().tobytes() for r in rows]

    groups: dict[bytes, tuple[list[int], list[int]]] = {}
    for i, k in enumerate(keys(carried0)):
        groups.setdefault(k, ([], []))[0].append(i)
    for j, k in enumerate(keys(carried1)):
        groups.setdefault(k, ([], []))[1].append(j)
    out = []
    for a, b in groups.values():
        if len(a) != len(b):
            raise InvalidValueError(
                f"the source batch has {len(a)} states of a structure (mask) that the data batch has {len(b)} times; "
                "OT pairs only states of equal structure: draw the source like the data (domain.sample_source(like=x1))"
            )
        out.append((torch.tensor(a), torch.tensor(b)))
    return out


def pair_within_groups(coupling: "Coupling", x0: State, x1: State, generator: torch.Generator | None) -> tuple[State, State]:
    """``coupling.pair`` applied within each structure group (see :func:`structure_groups`)."""
    lead = tree.first(x0).device
    i_all, j_all = [], []
    for i, j in structure_groups(x0, x1):
        a, b = coupling._pair_indices(tree.index(x0, i.to(lead)), tree.index(x1, j.to(lead)), generator)
        i_all.append(i[a.cpu()])
        j_all.append(j[b.cpu()])
    i, j = torch.cat(i_all), torch.cat(j_all)
    order = torch.randperm(i.numel(), generator=generator)
    i, j = i[order].to(lead), j[order].to(lead)
    return tree.index(x0, i), tree.index(x1, j)


def sample_pairs(plan: np.ndarray, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Draws ``n`` distinct index pairs from a transport plan, weighted by its mass.

    For an exact OT plan between equal batches (a permutation) this returns exactly
    the permutation's pairs, in random order.
    """
    p = torch.from_numpy(np.ascontiguousarray(plan, dtype=np.float64)).flatten().clamp_min(0)
    total = p.sum()
    if not torch.isfinite(total) or total <= 0:
        raise FloatingPointError("the transport plan is empty or not finite; check the inputs for NaN")
    support = int((p > 0).sum())
    idx = torch.multinomial(p / total, n, replacement=n > support, generator=generator)
    return idx // plan.shape[1], idx % plan.shape[1]


def _pair(coupling, x0: State, x1: State, generator: torch.Generator | None) -> tuple[State, State]:
    _check(x0, x1)
    if structure_groups(x0, x1) is not None:
        return pair_within_groups(coupling, x0, x1, generator)
    i, j = coupling._pair_indices(x0, x1, generator)
    if isinstance(x0, Tensor):
        return x0[i.to(x0.device)], x1[j.to(x1.device)]
    lead = tree.first(x0).device
    return tree.index(x0, i.to(lead)), tree.index(x1, j.to(lead))


@attrs.frozen
class ExactOT:
    """Exact minibatch OT (POT ``ot.emd``, squared Euclidean cost)."""

    def plan(self, x0: State, x1: State) -> np.ndarray:
        import ot

        _check(x0, x1)
        cost = squared_cost(x0, x1)
        n0, n1 = tree.batch_size(x0), tree.batch_size(x1)
        a, b = np.full(n0, 1.0 / n0), np.full(n1, 1.0 / n1)
        return ot.emd(a, b, cost, numItermax=1_000_000)

    def _pair_indices(self, x0: State, x1: State, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        plan = self.plan(x0, x1)
        n0, n1 = tree.batch_size(x0), tree.batch_size(x1)
        if n0 == n1:
            # Equal batches: the exact plan is a permutation (network simplex returns a
            # vertex), so its support is the pairing; shuffle it instead of drawing B
            # times from B^2 entries. Same pairs as sample_pairs, far cheaper.
            i, j = (torch.from_numpy(a) for a in np.nonzero(plan > 0))
            if i.numel() == n0:
                order = torch.randperm(i.numel(), generator=generator)
                return i[order], j[order]
        return sample_pairs(plan, n0, generator)

    def pair(self, x0: State, x1: State, generator: torch.Generator | None = None) -> tuple[State, State]:
        """Pairs ``x0`` with ``x1`` (``(B, *event)`` each, or pytrees); states with carried
        leaves (masks) are paired only within equal structures."""
        return _pair(self, x0, x1, generator)


@attrs.frozen
class Sinkhorn:
    """Entropic OT (POT ``ot.sinkhorn``) on the cost divided by its maximum.

    Args:
        reg (float): entropic regularisation relative to the normalised cost (> 0).
    """

    reg: float = attrs.field(default=0.05, converter=real())

    def __attrs_post_init__(self) -> None:
        if not self.reg > 0:
            raise InvalidValueError(f"Sinkhorn.reg must be > 0, got {self.reg}")

    def plan(self, x0: State, x1: State) -> np.ndarray:
        import ot

        _check(x0, x1)
        cost = squared_cost(x0, x1)
        cost = cost / max(cost.max(), 1e-12)
        n0, n1 = tree.batch_size(x0), tree.batch_size(x1)
        a, b = np.full(n0, 1.0 / n0), np.full(n1, 1.0 / n1)
        return ot.sinkhorn(a, b, cost, self.reg, numItermax=10_000)

    def _pair_indices(self, x0: State, x1: State, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return sample_pairs(self.plan(x0, x1), tree.batch_size(x0), generator)

    def pair(self, x0: State, x1: State, generator: torch.Generator | None = None) -> tuple[State, State]:
        """Pairs drawn from the entropic plan (within equal structures for masked states)."""
        return _pair(self, x0, x1, generator)


@attrs.frozen
class Independent:
    """Independent pairing: the batches as they come (CFM without OT)."""

    def pair(self, x0: State, x1: State, generator: torch.Generator | None = None) -> tuple[State, State]:
        """The batches as they come (a source drawn like the data keeps each state's structure)."""
        _check(x0, x1)
        n = min(tree.batch_size(x0), tree.batch_size(x1))
        if isinstance(x0, Tensor):
            return x0[:n], x1[:n]
        return tree.index(x0, slice(0, n)), tree.index(x1, slice(0, n))
