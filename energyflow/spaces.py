"""Spaces: the geometry a state lives in.

A space draws base noise and projects states back onto their constraints. Samplers
draw noise through the space and project after every step, so a graph's adjacency
stays symmetric and masked without the sampler knowing what a graph is.

Example:
    >>> import torch
    >>> from energyflow.spaces import SymmetricMasked
    >>> space = SymmetricMasked(num_nodes=4, mask=torch.tensor([1., 1., 1., 0.]))
    >>> a = space.noise(2, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.equal(a, a.transpose(-1, -2))), float(a[:, 3].abs().sum())
    (True, 0.0)
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from energyflow.errors import InvalidValueError


@runtime_checkable
class Space(Protocol):
    """What samplers and trainers need of a state space.

    Attributes:
        event_shape (tuple[int, ...]): shape of one state, without the batch dimension.
    """

    event_shape: tuple[int, ...]

    def noise(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draws ``n`` states from the base distribution: shape ``(n, *event_shape)``."""
        ...

    def project(self, x: Tensor) -> Tensor:
        """Maps ``x`` of shape ``(B, *event_shape)`` onto the constraints."""
        ...

    def randn_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Standard noise in the space with ``x``'s shape, device and dtype."""
        ...


def _randn(shape, generator, device, dtype) -> Tensor:
    if generator is not None and device is not None and generator.device != torch.device(device):
        # A CPU generator drives draws for any device: draw there, then move.
        return torch.randn(shape, generator=generator, dtype=dtype).to(device)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


class Euclidean:
    """Plain R^d (any event shape); the default space.

    Args:
        event_shape (tuple[int, ...] | int): shape of one state.
    """

    def __init__(self, event_shape: tuple[int, ...] | int) -> None:
        if isinstance(event_shape, int):
            event_shape = (event_shape,)
        event_shape = tuple(int(s) for s in event_shape)
        if not event_shape or any(s <= 0 for s in event_shape):
            raise InvalidValueError(f"event_shape must be non-empty positive sizes, got {event_shape}")
        self.event_shape = event_shape

    def noise(self, n, generator=None, device=None, dtype=None) -> Tensor:
        return _randn((n, *self.event_shape), generator, device, dtype or torch.get_default_dtype())

    def project(self, x: Tensor) -> Tensor:
        return x

    def randn_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return _randn(x.shape, generator, x.device, x.dtype)

    def __repr__(self) -> str:
        return f"Euclidean(event_shape={self.event_shape})"


class SymmetricMasked:
    """Symmetric ``(n, n)`` matrices with zero diagonal and a node mask (graphs).

    States have shape ``(B, n, n)``. Entries touching a masked-out node are zero, the
    diagonal is zero, and ``A == A.T``. Noise is the symmetric Gaussian whose free
    (upper-triangular, unmasked) entries are i.i.d. standard normal.

    Args:
        num_nodes (int): n.
        mask (Tensor | None): shape ``(n,)`` or ``(B, n)`` with 1 for real nodes;
            ``None`` keeps all nodes. A ``(B, n)`` mask fixes the batch size.
    """

    def __init__(self, num_nodes: int, mask: Tensor | None = None) -> None:
        if num_nodes <= 0:
            raise InvalidValueError(f"num_nodes must be positive, got {num_nodes}")
        self.num_nodes = int(num_nodes)
        self.event_shape = (self.num_nodes, self.num_nodes)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.get_default_dtype())
            if mask.shape[-1] != num_nodes or mask.dim() not in (1, 2):
                raise InvalidValueError(
                    f"mask must have shape (n,) or (B, n) with n={num_nodes}, got {tuple(mask.shape)}"
                )
        self.mask = mask

    def _pair_mask(self, x: Tensor) -> Tensor:
        n = self.num_nodes
        off = 1.0 - torch.eye(n, device=x.device, dtype=x.dtype)
        if self.mask is None:
            return off
        m = self.mask.to(device=x.device, dtype=x.dtype)
        if m.dim() == 2 and m.shape[0] != x.shape[0]:
            raise InvalidValueError(
                f"this space's mask is per-sample for batch {m.shape[0]}, got a batch of {x.shape[0]}"
            )
        return m.unsqueeze(-1) * m.unsqueeze(-2) * off

    def project(self, x: Tensor) -> Tensor:
        return 0.5 * (x + x.transpose(-1, -2)) * self._pair_mask(x)

    def randn_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        g = _randn(x.shape, generator, x.device, x.dtype)
        # (G + G^T)/sqrt(2) has unit variance off the diagonal.
        return (g + g.transpose(-1, -2)) / math.sqrt(2.0) * self._pair_mask(x)

    def noise(self, n, generator=None, device=None, dtype=None) -> Tensor:
        like = torch.empty((n, *self.event_shape), device=device, dtype=dtype or torch.get_default_dtype())
        return self.randn_like(like, generator)

    def __repr__(self) -> str:
        return f"SymmetricMasked(num_nodes={self.num_nodes}, masked={self.mask is not None})"


class ZeroCenterOfMass:
    """Point clouds ``(n, dim)`` whose centre of mass is at the origin (3-D molecules).

    Args:
        num_points (int): n.
        dim (int): spatial dimension (3 for molecules).
    """

    def __init__(self, num_points: int, dim: int = 3) -> None:
        if num_points <= 1 or dim <= 0:
            raise InvalidValueError("need num_points > 1 and dim > 0")
        self.event_shape = (int(num_points), int(dim))

    def project(self, x: Tensor) -> Tensor:
        return x - x.mean(dim=-2, keepdim=True)

    def randn_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.project(_randn(x.shape, generator, x.device, x.dtype))

    def noise(self, n, generator=None, device=None, dtype=None) -> Tensor:
        return self.project(_randn((n, *self.event_shape), generator, device, dtype or torch.get_default_dtype()))

    def __repr__(self) -> str:
        return f"ZeroCenterOfMass(num_points={self.event_shape[0]}, dim={self.event_shape[1]})"
