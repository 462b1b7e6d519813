"""Spaces: the geometry a state lives in.

A space is a linear constraint set S inside the ambient tensor space (symmetric
adjacency matrices with a zero diagonal and a node mask; point clouds with their centre
of mass at the origin; or everything, for Euclidean states). It owns the geometry every
sampler, loss and coupling needs:

* ``project(x)``: the orthogonal projection onto S (for states, and, being linear, for
  gradients and velocities: ``tangent``);
* noise: the projection of standard ambient noise, i.e. the standard Gaussian on S in
  the metric S inherits from the ambient space;
* ``sqnorm(v)`` and ``flatten(v)``: that metric, per sample (``flatten`` lists
  coordinates whose Euclidean norm is ``sqnorm``).

With drift ``-project(grad U)`` and noise ``project(xi)``, Langevin dynamics on S has the
stationary density ``exp(-U / eps)`` with respect to the Lebesgue measure on S, and MALA
and HMC proposal densities and kinetic energies are Gaussians in ``sqnorm``. Samplers
draw noise through the space and project after every step, so a graph's adjacency stays
symmetric and masked without the sampler knowing what a graph is.

Example:
    >>> import torch
    >>> from energyflow.spaces import SymmetricMasked
    >>> space = SymmetricMasked(num_nodes=4, mask=torch.tensor([1., 1., 1., 0.]))
    >>> a = space.noise(2, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.equal(a, a.transpose(-1, -2))), float(a[:, 3].abs().sum())
    (True, 0.0)
    >>> space.flatten(a).shape    # the 3 free entries of the upper triangle among 3 real nodes, and 3 zeros
    torch.Size([2, 6])
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
        """Standard noise on the space (the projection of standard ambient noise) with
        ``x``'s shape, device and dtype."""
        ...

    def tangent(self, v: Tensor) -> Tensor:
        """Projects a vector ``v`` of shape ``(B, *event_shape)`` (a gradient, a velocity,
        a noise draw) onto the directions the constraints allow."""
        ...

    def sqnorm(self, v: Tensor) -> Tensor:
        """Squared norm per sample ``(B,)`` of a tangent vector ``v``, in the metric the
        space's noise is standard in."""
        ...

    def flatten(self, v: Tensor) -> Tensor:
        """``(B, D)`` coordinates of ``v`` whose squared Euclidean norm is ``sqnorm(v)``."""
        ...


def _ambient_sqnorm(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).pow(2).sum(1)


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

    def tangent(self, v: Tensor) -> Tensor:
        return v

    def sqnorm(self, v: Tensor) -> Tensor:
        return _ambient_sqnorm(v)

    def flatten(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], -1)

    def __repr__(self) -> str:
        return f"Euclidean(event_shape={self.event_shape})"


class _ProjectedSubspace:
    """Shared geometry of a linear subspace given by an orthogonal ``project``: tangent
    vectors are projected too, noise is projected standard noise, the metric is ambient."""

    event_shape: tuple[int, ...]

    def project(self, x: Tensor) -> Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def tangent(self, v: Tensor) -> Tensor:
        return self.project(v)

    def randn_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.project(_randn(x.shape, generator, x.device, x.dtype))

    def noise(self, n, generator=None, device=None, dtype=None) -> Tensor:
        like = torch.empty((n, *self.event_shape), device=device, dtype=dtype or torch.get_default_dtype())
        return self.randn_like(like, generator)

    def sqnorm(self, v: Tensor) -> Tensor:
        return _ambient_sqnorm(v)


class SymmetricMasked(_ProjectedSubspace):
    """Symmetric ``(n, n)`` matrices with zero diagonal and a node mask (graphs).

    States have shape ``(B, n, n)``, or ``(B, n, n, C)`` with ``channels=C`` (one
    symmetric matrix per bond type). Entries touching a masked-out node are zero, the
    diagonal is zero, and ``A[:, i, j] == A[:, j, i]``. The free coordinates are the
    upper-triangular entries among real nodes; ``project`` is the orthogonal projection
    ``(A + A^T) / 2`` times the pair mask. Noise is the projection of standard noise, so a
    free entry has variance 1/2: it is the standard Gaussian on the subspace in the
    Frobenius metric, where ``a_ij`` counts twice (as ``A_ij`` and ``A_ji``).

    Args:
        num_nodes (int): n.
        mask (Tensor | str | None): shape ``(n,)`` or ``(B, n)`` with 1 for real nodes;
            ``None`` keeps all nodes. A ``(B, n)`` mask fixes the batch size. A string
            names the leaf of a pytree state that holds each sample's ``(B, n)`` mask (in a
            :class:`ProductSpace`, which reads it from the state on every call).
        channels (int | None): C for states ``(B, n, n, C)``; None for ``(B, n, n)``.
    """

    def __init__(self, num_nodes: int, mask: Tensor | str | None = None, channels: int | None = None) -> None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes <= 0:
            raise InvalidValueError(f"num_nodes must be a positive integer, got {num_nodes!r}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0):
            raise InvalidValueError(f"channels must be a positive integer or None, got {channels!r}")
        self.num_nodes = int(num_nodes)
        self.channels = channels
        self.event_shape = (self.num_nodes, self.num_nodes) + ((channels,) if channels is not None else ())
        self.mask_key = mask if isinstance(mask, str) else None
        if isinstance(mask, str):
            mask = None
        if mask is not None:
            mask = torch.as_tensor(mask)
            mask = mask.to(torch.get_default_dtype()) if not mask.is_floating_point() else mask
            if mask.shape[-1] != num_nodes or mask.dim() not in (1, 2):
                raise InvalidValueError(
                    f"mask must have shape (n,) or (B, n) with n={num_nodes}, got {tuple(mask.shape)}"
                )
        self.mask = mask

    def with_mask(self, mask: Tensor) -> "SymmetricMasked":
        """This space with a fixed ``(n,)`` or ``(B, n)`` mask (how a mask key is resolved)."""
        return SymmetricMasked(self.num_nodes, mask=mask, channels=self.channels)

    def _pair_mask(self, x: Tensor) -> Tensor:
        n = self.num_nodes
        if self.mask_key is not None:
            raise InvalidValueError(
                f"this space reads its mask from the state's {self.mask_key!r} leaf; use it inside a ProductSpace"
            )
        off = 1.0 - torch.eye(n, device=x.device, dtype=x.dtype)
        if self.mask is None:
            pair = off
        else:
            m = self.mask.to(device=x.device, dtype=x.dtype)
            if m.dim() == 2 and m.shape[0] != x.shape[0]:
                raise InvalidValueError(
                    f"this space's mask is per-sample for batch {m.shape[0]}, got a batch of {x.shape[0]}"
                )
            pair = m.unsqueeze(-1) * m.unsqueeze(-2) * off
        return pair.unsqueeze(-1) if self.channels is not None else pair

    def project(self, x: Tensor) -> Tensor:
        return 0.5 * (x + x.transpose(1, 2)) * self._pair_mask(x)

    def flatten(self, v: Tensor) -> Tensor:
        i, j = torch.triu_indices(self.num_nodes, self.num_nodes, offset=1, device=v.device)
        return (math.sqrt(2.0) * v[:, i, j]).reshape(v.shape[0], -1)

    def __repr__(self) -> str:
        channels = f", channels={self.channels}" if self.channels is not None else ""
        masked = repr(self.mask_key) if self.mask_key is not None else self.mask is not None
        return f"SymmetricMasked(num_nodes={self.num_nodes}{channels}, masked={masked})"


class ZeroCenterOfMass:
    """Point clouds ``(n, dim)`` whose centre of mass is at the origin (3-D molecules).

    ``project`` subtracts the mean point (the orthogonal projection onto the subspace);
    noise is the projected standard Gaussian; ``flatten`` keeps all ``n * dim``
    coordinates (their norm is the subspace's metric).

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

    def tangent(self, v: Tensor) -> Tensor:
        return self.project(v)

    def sqnorm(self, v: Tensor) -> Tensor:
        return _ambient_sqnorm(v)

    def flatten(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], -1)

    def __repr__(self) -> str:
        return f"ZeroCenterOfMass(num_points={self.event_shape[0]}, dim={self.event_shape[1]})"


class NodeMasked(_ProjectedSubspace):
    """Per-node features ``(n, *features)`` whose rows for masked-out nodes are zero.

    The free coordinates are the feature entries of real nodes; ``project`` zeroes the
    others (the orthogonal projection), noise is projected standard noise and the metric
    is the ambient one.

    Args:
        num_nodes (int): n.
        features (tuple[int, ...] | int): shape of one node's features.
        mask (Tensor | str | None): ``(n,)`` or ``(B, n)`` with 1 for real nodes, the name
            of the state leaf holding it (inside a :class:`ProductSpace`), or None.

    Example:
        >>> import torch
        >>> space = NodeMasked(3, 2, mask=torch.tensor([1, 1, 0]))
        >>> space.project(torch.ones(1, 3, 2))[0, :, 0].tolist()
        [1.0, 1.0, 0.0]
    """

    def __init__(self, num_nodes: int, features: tuple[int, ...] | int, mask: Tensor | str | None = None) -> None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes <= 0:
            raise InvalidValueError(f"num_nodes must be a positive integer, got {num_nodes!r}")
        features = (features,) if isinstance(features, int) else tuple(int(f) for f in features)
        if any(f <= 0 for f in features):
            raise InvalidValueError(f"features must be positive sizes, got {features}")
        self.num_nodes, self.features = int(num_nodes), features
        self.event_shape = (self.num_nodes, *features)
        self.mask_key = mask if isinstance(mask, str) else None
        self.mask = None if mask is None or isinstance(mask, str) else torch.as_tensor(mask)
        if self.mask is not None and (self.mask.shape[-1] != num_nodes or self.mask.dim() not in (1, 2)):
            raise InvalidValueError(f"mask must have shape (n,) or (B, n) with n={num_nodes}, got {tuple(self.mask.shape)}")

    def with_mask(self, mask: Tensor) -> "NodeMasked":
        return NodeMasked(self.num_nodes, self.features, mask=mask)

    def _mask(self, x: Tensor) -> Tensor | None:
        if self.mask_key is not None:
            raise InvalidValueError(
                f"this space reads its mask from the state's {self.mask_key!r} leaf; use it inside a ProductSpace"
            )
        if self.mask is None:
            return None
        m = self.mask.to(device=x.device, dtype=x.dtype)
        if m.dim() == 2 and m.shape[0] != x.shape[0]:
            raise InvalidValueError(f"this space's mask is per-sample for batch {m.shape[0]}, got a batch of {x.shape[0]}")
        return m.reshape(*m.shape, *([1] * len(self.features)))

    def project(self, x: Tensor) -> Tensor:
        m = self._mask(x)
        return x if m is None else x * m

    def flatten(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], -1)

    def __repr__(self) -> str:
        masked = repr(self.mask_key) if self.mask_key is not None else self.mask is not None
        return f"NodeMasked(num_nodes={self.num_nodes}, features={self.features}, masked={masked})"


class ProductSpace:
    """The product of one space per coordinate leaf of a dict state (a graph, a molecule).

    States are dicts of batch-first tensors. Every floating-point leaf needs a space
    here; integer and bool leaves (masks, node counts) are carried: every method passes
    them through unchanged, so a projected state, a gradient or a noise draw keeps the
    state's structure. A component built with ``mask="key"`` reads each sample's mask
    from the state's ``key`` leaf on every call, so masks may vary per sample and per
    batch.

    Args:
        spaces (dict[str, Space]): coordinate leaf name -> its space.

    Example:
        >>> import torch
        >>> space = ProductSpace({"x": NodeMasked(3, 2, mask="mask"), "adj": SymmetricMasked(3, mask="mask")})
        >>> state = {"x": torch.ones(2, 3, 2), "adj": torch.ones(2, 3, 3),
        ...          "mask": torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)}
        >>> p = space.project(state)
        >>> p["adj"][0].tolist(), p["x"][0, 2].tolist(), p["mask"] is state["mask"]
        ([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0.0, 0.0], True)
        >>> space.sqnorm(p).tolist()      # 2 free adjacency entries and 4 features; 6 and 6
        [6.0, 12.0]
    """

    def __init__(self, spaces: dict[str, object]) -> None:
        if not isinstance(spaces, dict) or not spaces:
            raise InvalidValueError("ProductSpace needs a non-empty dict of leaf name -> space")
        for k, sp in spaces.items():
            if not isinstance(k, str) or not isinstance(sp, Space):
                raise InvalidValueError(f"ProductSpace entries must be name -> Space, got {k!r} -> {type(sp).__name__}")
        self.spaces = dict(spaces)
        self.event_shape = {k: tuple(sp.event_shape) for k, sp in self.spaces.items()}

    def _check(self, x: dict) -> None:
        if not isinstance(x, dict):
            raise InvalidValueError(f"a ProductSpace state is a dict of tensors, got {type(x).__name__}")
        missing = [k for k in self.spaces if k not in x]
        if missing:
            raise InvalidValueError(f"the state has no leaf {missing[0]!r}; this space has {sorted(self.spaces)}")
        extra = [k for k, v in x.items() if k not in self.spaces and isinstance(v, Tensor) and v.is_floating_point()]
        if extra:
            raise InvalidValueError(
                f"the state's floating-point leaf {extra[0]!r} has no space; give one, or make it an integer/bool leaf "
                "to carry it unchanged"
            )

    def bound(self, x: dict) -> dict[str, object]:
        """The component spaces with masks read from ``x`` (a state, a gradient or a noise draw)."""
        self._check(x)
        out = {}
        for k, sp in self.spaces.items():
            key = getattr(sp, "mask_key", None)
            if key is not None:
                if key not in x:
                    raise InvalidValueError(f"the space of {k!r} reads its mask from {key!r}, which the state lacks")
                sp = sp.with_mask(x[key])
            out[k] = sp
        return out

    def _map(self, x: dict, method: str, *args) -> dict:
        spaces = self.bound(x)
        return {k: getattr(spaces[k], method)(v, *args) if k in spaces else v for k, v in x.items()}

    def project(self, x: dict) -> dict:
        return self._map(x, "project")

    def tangent(self, v: dict) -> dict:
        return self._map(v, "tangent")

    def randn_like(self, x: dict, generator: torch.Generator | None = None) -> dict:
        spaces = self.bound(x)
        # Leaves in the state's order, so the random stream does not depend on the dict the space was built from.
        return {k: spaces[k].randn_like(v, generator) if k in spaces else v for k, v in x.items()}

    def noise(self, n, generator=None, device=None, dtype=None, like: dict | None = None) -> dict:
        """Noise states: like ``like`` (its carried leaves, masks included, are copied), or,
        for spaces that read no mask, ``n`` fresh draws of every leaf."""
        if like is not None:
            out = self.randn_like(like, generator)
            return out if dtype is None else {k: v.to(dtype) if k in self.spaces else v for k, v in out.items()}
        keyed = [k for k, sp in self.spaces.items() if getattr(sp, "mask_key", None) is not None]
        if keyed:
            raise InvalidValueError(
                f"the space of {keyed[0]!r} reads its mask from the state: draw noise like a data batch "
                "(noise(n, like=batch) or domain.sample_source(like=batch))"
            )
        return {k: sp.noise(n, generator=generator, device=device, dtype=dtype) for k, sp in self.spaces.items()}

    def sqnorm(self, v: dict) -> Tensor:
        spaces = self.bound(v)
        out = None
        for k, sp in spaces.items():
            part = sp.sqnorm(v[k])
            out = part if out is None else out + part
        return out

    def flatten(self, v: dict) -> Tensor:
        spaces = self.bound(v)
        return torch.cat([sp.flatten(v[k]) for k, sp in spaces.items()], dim=1)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {sp!r}" for k, sp in self.spaces.items())
        return f"ProductSpace({{{inner}}})"
