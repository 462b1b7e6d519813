"""Mass matrices (HMC) and preconditioners (MALA): the metric a kernel moves in.

A metric is an inverse mass matrix ``Sigma = M^-1`` with a factor ``L L^T = Sigma``.
HMC draws momenta ``p ~ N(0, M)``, moves positions by ``Sigma p`` and has kinetic energy
``p^T Sigma p / 2``; preconditioned MALA drifts by ``-h Sigma grad`` with noise
``sqrt(2 h) L xi`` and proposal density ``exp(-d^T M d / (4 h))``. Every metric offers
exactly these operations, so a kernel never knows which one it has:

* :class:`IdentityMetric` on any space (constrained spaces and pytree states included):
  its noise is the space's noise and its norm the space's ``sqnorm``;
* :class:`DiagonalMetric` (``Sigma`` a tensor broadcastable to the event shape) and
  :class:`DenseMetric` (``Sigma`` a ``(D, D)`` matrix over the flattened event), on
  Euclidean tensor states.

Example:
    >>> import torch
    >>> m = DenseMetric(torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    >>> p = m.momentum(torch.zeros(100_000, 2), torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(torch.cov(p.T), torch.linalg.inv(m.inverse_mass), atol=0.02))   # p ~ N(0, M)
    True
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from energyflow.errors import InvalidValueError
from energyflow.spaces import Euclidean, Space
from energyflow.tree import State


class Metric(Protocol):
    """What MALA and HMC kernels need of a (inverse) mass matrix."""

    def momentum(self, like: State, generator: torch.Generator | None) -> State:
        """``p ~ N(0, M)`` shaped like ``like``."""
        ...

    def kinetic(self, p: State) -> Tensor:
        """``p^T Sigma p / 2`` per sample, ``(B,)``."""
        ...

    def velocity(self, p: State) -> State:
        """``Sigma p`` (also the preconditioned gradient ``Sigma g``)."""
        ...

    def noise(self, like: State, generator: torch.Generator | None) -> State:
        """``L xi ~ N(0, Sigma)`` shaped like ``like``."""
        ...

    def precision_sqnorm(self, d: State) -> Tensor:
        """``d^T M d`` per sample, ``(B,)``."""
        ...


class IdentityMetric:
    """``Sigma = I`` in the geometry of ``space`` (any space, any state structure)."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def momentum(self, like: State, generator: torch.Generator | None) -> State:
        return self.space.randn_like(like, generator)

    noise = momentum

    def kinetic(self, p: State) -> Tensor:
        return 0.5 * self.space.sqnorm(p)

    def velocity(self, p: State) -> State:
        return p

    def precision_sqnorm(self, d: State) -> Tensor:
        return self.space.sqnorm(d)

    @property
    def inverse_mass(self) -> float:
        return 1.0

    def __repr__(self) -> str:
        return f"IdentityMetric({self.space!r})"


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return Euclidean(tuple(x.shape[1:])).randn_like(x, generator)


class DiagonalMetric:
    """``Sigma = diag(inverse_mass)`` with ``inverse_mass`` broadcastable to the event shape."""

    def __init__(self, inverse_mass: Tensor) -> None:
        if not bool((inverse_mass > 0).all()) or not bool(torch.isfinite(inverse_mass).all()):
            raise InvalidValueError("the inverse mass (diagonal) must be finite and positive")
        self.inverse_mass = inverse_mass
        self._sqrt = inverse_mass.sqrt()

    def momentum(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        return _randn_like(like, generator) / self._sqrt

    def noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        return _randn_like(like, generator) * self._sqrt

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p * p * self.inverse_mass).reshape(p.shape[0], -1).sum(1)

    def velocity(self, p: Tensor) -> Tensor:
        return self.inverse_mass * p

    def precision_sqnorm(self, d: Tensor) -> Tensor:
        return (d * d / self.inverse_mass).reshape(d.shape[0], -1).sum(1)

    def __repr__(self) -> str:
        return f"DiagonalMetric(shape={tuple(self.inverse_mass.shape)})"


class DenseMetric:
    """``Sigma`` a symmetric positive-definite ``(D, D)`` matrix over the flattened event."""

    def __init__(self, inverse_mass: Tensor) -> None:
        if inverse_mass.dim() != 2 or inverse_mass.shape[0] != inverse_mass.shape[1]:
            raise InvalidValueError(f"a dense inverse mass must be a square matrix, got {tuple(inverse_mass.shape)}")
        chol, info = torch.linalg.cholesky_ex(inverse_mass)
        if int(info) != 0 or not bool(torch.isfinite(chol).all()):
            raise InvalidValueError("the dense inverse mass matrix must be symmetric positive definite")
        self.inverse_mass = inverse_mass
        self._chol = chol  # L, lower: L L^T = Sigma

    def _flat(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def momentum(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        xi = self._flat(_randn_like(like, generator))
        # p = L^-T xi has covariance L^-T L^-1 = Sigma^-1 = M.
        p = torch.linalg.solve_triangular(self._chol.T, xi.T, upper=True).T
        return p.reshape(like.shape)

    def noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        xi = self._flat(_randn_like(like, generator))
        return (xi @ self._chol.T).reshape(like.shape)

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (self._flat(p) @ self._chol).pow(2).sum(1)

    def velocity(self, p: Tensor) -> Tensor:
        return (self._flat(p) @ self.inverse_mass).reshape(p.shape)

    def precision_sqnorm(self, d: Tensor) -> Tensor:
        z = torch.linalg.solve_triangular(self._chol, self._flat(d).T, upper=False)
        return z.pow(2).sum(0)

    def __repr__(self) -> str:
        return f"DenseMetric(dim={self.inverse_mass.shape[0]})"


def make_metric(inverse_mass: Tensor | float | None, space: Space, like: State) -> Metric:
    """The metric an ``inverse_mass`` argument describes, checked against the space and state.

    Args:
        inverse_mass: ``1.0``/None (identity), a positive tensor broadcastable to the event
            shape (diagonal), or a ``(D, D)`` matrix for a flat event ``(D,)`` (dense).
        space (Space): the state space; non-identity metrics need a Euclidean one.
        like (State): a batch of states (for shape, device and dtype).

    Raises:
        InvalidValueError: a non-positive mass, a shape that fits neither form, or a
            non-identity metric on a constrained space or a pytree state.
    """
    if inverse_mass is None or (not isinstance(inverse_mass, Tensor) and float(inverse_mass) == 1.0):
        return IdentityMetric(space)
    if not isinstance(like, Tensor) or not isinstance(space, Euclidean):
        raise InvalidValueError(
            f"a mass matrix other than the identity needs tensor states on a Euclidean space, not {space!r}; "
            "leave inverse_mass at 1.0 (a scalar step size still adapts)"
        )
    inv = torch.as_tensor(inverse_mass, dtype=like.dtype, device=like.device)
    event = tuple(like.shape[1:])
    if len(event) == 1 and inv.shape == (event[0], event[0]) and event[0] > 1:
        return DenseMetric(inv)
    try:
        torch.broadcast_shapes(inv.shape, event)
    except RuntimeError as err:
        raise InvalidValueError(
            f"inverse_mass of shape {tuple(inv.shape)} fits neither the event shape {event} (diagonal) "
            f"nor (D, D) for a flat event (D,) (dense)"
        ) from err
    if bool((inv <= 0).any()):
        raise InvalidValueError("inverse_mass must be positive")
    return DiagonalMetric(inv)


__all__ = ["DenseMetric", "DiagonalMetric", "IdentityMetric", "Metric", "make_metric"]
