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
from torch import Tensor

from energyflow.errors import InvalidValueError
from energyflow.validation import real


@runtime_checkable
class Coupling(Protocol):
    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Returns paired batches ``(x0[i], x1[j])`` of shape ``(B, *event)`` each."""
        ...


def _check(x0: Tensor, x1: Tensor) -> None:
    if x0.shape[1:] != x1.shape[1:]:
        raise InvalidValueError(f"source and data event shapes differ: {tuple(x0.shape[1:])} vs {tuple(x1.shape[1:])}")
    if x0.shape[0] == 0 or x1.shape[0] == 0:
        raise InvalidValueError("cannot couple empty batches")


def squared_cost(x0: Tensor, x1: Tensor) -> np.ndarray:
    """Squared Euclidean cost matrix ``(B0, B1)`` in float64 NumPy (what POT's solvers take).

    For states on one of energyflow's linear spaces this is already the space's metric
    (``space.sqnorm`` is the ambient norm restricted to the space), so no space is needed.
    """
    import ot

    a = x0.detach().reshape(x0.shape[0], -1).double().cpu().numpy()
    b = x1.detach().reshape(x1.shape[0], -1).double().cpu().numpy()
    return ot.dist(a, b, metric="sqeuclidean")


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


@attrs.frozen
class ExactOT:
    """Exact minibatch OT (POT ``ot.emd``, squared Euclidean cost)."""

    def plan(self, x0: Tensor, x1: Tensor) -> np.ndarray:
        import ot

        _check(x0, x1)
        cost = squared_cost(x0, x1)
        a = np.full(x0.shape[0], 1.0 / x0.shape[0])
        b = np.full(x1.shape[0], 1.0 / x1.shape[0])
        return ot.emd(a, b, cost, numItermax=1_000_000)

    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        plan = self.plan(x0, x1)
        if x0.shape[0] == x1.shape[0]:
            # Equal batches: the exact plan is a permutation (network simplex returns a
            # vertex), so its support is the pairing; shuffle it instead of drawing B
            # times from B^2 entries. Same pairs as sample_pairs, far cheaper.
            i, j = (torch.from_numpy(a) for a in np.nonzero(plan > 0))
            if i.numel() == x0.shape[0]:
                order = torch.randperm(i.numel(), generator=generator)
                i, j = i[order], j[order]
                return x0[i.to(x0.device)], x1[j.to(x1.device)]
        i, j = sample_pairs(plan, x0.shape[0], generator)
        return x0[i.to(x0.device)], x1[j.to(x1.device)]


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

    def plan(self, x0: Tensor, x1: Tensor) -> np.ndarray:
        import ot

        _check(x0, x1)
        cost = squared_cost(x0, x1)
        cost = cost / max(cost.max(), 1e-12)
        a = np.full(x0.shape[0], 1.0 / x0.shape[0])
        b = np.full(x1.shape[0], 1.0 / x1.shape[0])
        return ot.sinkhorn(a, b, cost, self.reg, numItermax=10_000)

    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        i, j = sample_pairs(self.plan(x0, x1), x0.shape[0], generator)
        return x0[i.to(x0.device)], x1[j.to(x1.device)]


@attrs.frozen
class Independent:
    """Independent pairing: the batches as they come (CFM without OT)."""

    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        _check(x0, x1)
        n = min(x0.shape[0], x1.shape[0])
        return x0[:n], x1[:n]
