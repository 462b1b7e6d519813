"""Batch-first pytree states: a tensor, or a dict of tensors that share the batch size.

A graph is ``{"x": (B, n, F) node features, "adj": (B, n, n) adjacency, "mask": (B, n)
bool}``; a toy or image state is one tensor (a one-leaf tree), so nothing changes for
them. Floating-point leaves are the *coordinates*: samplers move them and fields
differentiate them. Integer and bool leaves (masks, node counts) are *carried*: every
operation here passes them through from its first tree unchanged, so a gradient or a
noise draw has the same structure as the state it belongs to, mask included, and a
space can read the mask from any of them.

The helpers are thin wrappers over :mod:`torch.utils._pytree` (nested dicts, lists and
tuples work too); ``tensordict`` would add a dependency for what a dozen functions do.

Example:
    >>> import torch
    >>> from energyflow import tree
    >>> s = {"x": torch.ones(2, 3), "mask": torch.tensor([[1, 0, 1], [1, 1, 0]]).bool()}
    >>> t = tree.map(lambda a, b: a + 2 * b, s, s)        # coordinates only
    >>> t["x"][0].tolist(), t["mask"] is s["mask"]
    ([3.0, 3.0, 3.0], True)
    >>> tree.batch_size(s), tree.where(torch.tensor([True, False]), t, s)["x"][:, 0].tolist()
    (2, [3.0, 1.0])
"""

from __future__ import annotations

from typing import Any, Callable, Union

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from energyflow.errors import InvalidTypeError, InvalidValueError

State = Union[Tensor, dict[str, Any]]

__all__ = [
    "State", "batch_size", "cat", "grad", "clone", "coordinates", "describe", "detach", "first", "index", "is_coordinate",
    "isfinite", "map", "ravel", "replace_coordinates", "requires_grad", "set_index", "to", "unravel", "where", "zeros_like",
]


def is_coordinate(leaf: Any) -> bool:
    """True for a floating-point tensor leaf (sampled and differentiated)."""
    return isinstance(leaf, Tensor) and leaf.is_floating_point()


def _flatten(tree: State) -> tuple[list[Any], Any]:
    return pytree.tree_flatten(tree)


def coordinates(tree: State) -> list[Tensor]:
    """The floating-point leaves of ``tree``, in flattening order."""
    return [leaf for leaf in _flatten(tree)[0] if is_coordinate(leaf)]


def first(tree: State) -> Tensor:
    """The first coordinate leaf (for device, dtype and batch size)."""
    leaves = coordinates(tree)
    if not leaves:
        raise InvalidTypeError(f"a state needs at least one floating-point tensor, got {describe(tree)}")
    return leaves[0]


def describe(tree: Any) -> str:
    """Shapes and dtypes of a state, for error messages: ``(4, 2) (torch.float32)`` or a dict of them."""
    if isinstance(tree, Tensor):
        return f"{tuple(tree.shape)} ({tree.dtype})"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in tree.items()) + "}"
    return type(tree).__name__


def map(fn: Callable[..., Tensor], tree: State, *rest: State) -> State:  # noqa: A001 - tree.map reads well
    """Applies ``fn`` leafwise to the coordinate leaves of ``tree`` and ``rest`` (same structure).

    Carried leaves (integer, bool, non-tensor) come from ``tree`` unchanged.
    """
    if isinstance(tree, Tensor) and not rest:
        return fn(tree) if tree.is_floating_point() else tree
    if isinstance(tree, Tensor) and all(isinstance(r, Tensor) for r in rest):
        return fn(tree, *rest) if tree.is_floating_point() else tree
    leaves, spec = _flatten(tree)
    others = []
    for r in rest:
        r_leaves, r_spec = _flatten(r)
        if r_spec != spec:
            raise InvalidValueError(f"states of different structure: {describe(tree)} and {describe(r)}")
        others.append(r_leaves)
    out = [fn(leaf, *(o[i] for o in others)) if is_coordinate(leaf) else leaf for i, leaf in enumerate(leaves)]
    return pytree.tree_unflatten(out, spec)


def batch_size(tree: State) -> int:
    """The leading dimension every leaf shares.

    Raises:
        InvalidValueError: leaves disagree on it, or a leaf has no batch dimension.
    """
    sizes = {leaf.shape[0] if leaf.dim() > 0 else None for leaf in _flatten(tree)[0] if isinstance(leaf, Tensor)}
    if None in sizes or len(sizes) != 1:
        raise InvalidValueError(f"every leaf of a state must share its batch (first) dimension, got {describe(tree)}")
    return sizes.pop()


def _all_leaves_map(fn: Callable[[Tensor], Tensor], tree: State) -> State:
    if isinstance(tree, Tensor):
        return fn(tree)
    leaves, spec = _flatten(tree)
    return pytree.tree_unflatten([fn(x) if isinstance(x, Tensor) else x for x in leaves], spec)


def where(cond: Tensor, a: State, b: State) -> State:
    """Per-sample choice: ``a[i]`` where ``cond[i]`` (shape ``(B,)``), else ``b[i]``."""

    def pick(x: Tensor, y: Tensor) -> Tensor:
        return torch.where(cond.reshape(-1, *([1] * (x.dim() - 1))), x, y)

    if isinstance(a, Tensor):
        return pick(a, b)
    a_leaves, spec = _flatten(a)
    b_leaves = _flatten(b)[0]
    out = [pick(x, y) if isinstance(x, Tensor) else x for x, y in zip(a_leaves, b_leaves)]
    return pytree.tree_unflatten(out, spec)


def isfinite(tree: State) -> Tensor:
    """``(B,)`` bool: every coordinate of sample ``i`` is finite."""
    leaves = coordinates(tree)
    out = torch.ones(leaves[0].shape[0], dtype=torch.bool, device=leaves[0].device)
    for leaf in leaves:
        out &= torch.isfinite(leaf.reshape(leaf.shape[0], -1)).all(1)
    return out


def detach(tree: State) -> State:
    return map(lambda x: x.detach(), tree)


def clone(tree: State) -> State:
    return _all_leaves_map(lambda x: x.clone(), tree)


def zeros_like(tree: State) -> State:
    return map(torch.zeros_like, tree)


def to(tree: State, *args: Any, **kwargs: Any) -> State:
    """Moves every leaf (``tree.to(x, "cuda")``); a dtype changes coordinates only."""
    if any(isinstance(a, torch.dtype) for a in args) or "dtype" in kwargs:
        return map(lambda x: x.to(*args, **kwargs), tree)
    return _all_leaves_map(lambda x: x.to(*args, **kwargs), tree)


def requires_grad(tree: State) -> tuple[State, list[Tensor]]:
    """A detached copy whose coordinates require grad, and those coordinates."""
    out = map(lambda x: x.detach().requires_grad_(True), tree)
    return out, coordinates(out)


def index(tree: State, idx: Tensor | slice) -> State:
    """Samples ``idx`` of every leaf."""
    return _all_leaves_map(lambda x: x[idx], tree)


def set_index(tree: State, idx: Tensor, value: State) -> None:
    """In place: ``tree[idx] = value`` on every coordinate leaf."""
    for leaf, v in zip(coordinates(tree), coordinates(value)):
        leaf[idx] = v


def cat(trees: list[State]) -> State:
    """Concatenates states along the batch dimension (every leaf, carried ones too)."""
    if isinstance(trees[0], Tensor):
        return torch.cat(trees)
    flat = [_flatten(t) for t in trees]
    spec = flat[0][1]
    if any(s != spec for _, s in flat):
        raise InvalidValueError("cannot concatenate states of different structure")
    out = [torch.cat([f[0][i] for f in flat]) if isinstance(flat[0][0][i], Tensor) else flat[0][0][i]
           for i in range(len(flat[0][0]))]
    return pytree.tree_unflatten(out, spec)


def replace_coordinates(tree: State, values: list[Tensor]) -> State:
    """``tree`` with its coordinate leaves replaced by ``values`` (in flattening order)."""
    if isinstance(tree, Tensor):
        return values[0]
    leaves, spec = _flatten(tree)
    it = iter(values)
    return pytree.tree_unflatten([next(it) if is_coordinate(leaf) else leaf for leaf in leaves], spec)


def grad(output: Tensor, tree: State, coords: list[Tensor], create_graph: bool = False) -> State:
    """``d output / d tree`` shaped like ``tree`` (``coords`` are its coordinates that
    require grad); a coordinate the output does not use gets a zero gradient."""
    grads = torch.autograd.grad(output, coords, create_graph=create_graph, allow_unused=True)
    return replace_coordinates(tree, [torch.zeros_like(c) if g is None else g for g, c in zip(grads, coords)])


def ravel(tree: State) -> Tensor:
    """``(B, D)``: every coordinate leaf flattened per sample and concatenated."""
    return torch.cat([leaf.reshape(leaf.shape[0], -1) for leaf in coordinates(tree)], dim=1)


def unravel(flat: Tensor, like: State) -> State:
    """The inverse of :func:`ravel`: ``flat`` ``(B, D)`` laid out like ``like``'s coordinates."""
    if isinstance(like, Tensor):
        return flat.reshape(flat.shape[0], *like.shape[1:])
    leaves, spec = _flatten(like)
    out, offset = [], 0
    for leaf in leaves:
        if is_coordinate(leaf):
            size = leaf[0].numel()
            out.append(flat[:, offset:offset + size].reshape(flat.shape[0], *leaf.shape[1:]))
            offset += size
        else:
            out.append(leaf)
    return pytree.tree_unflatten(out, spec)
