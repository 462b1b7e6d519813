"""The Energy Matching objective: OT flow loss on -grad V plus contrastive divergence.

Pieces (flow_matching-style, each a small function with a dataclass output):

* :func:`linear_path` - ``x_t = (1 - t) x0 + t x1`` and the target velocity ``x1 - x0``.
* :func:`flow_weight` - ``w(t)``: 1 before ``tau_star``, ramping linearly to 0 at ``t = 1``.
* :func:`flow_loss` - ``mean_b w(t_b) * mean_d (-grad V(x_t) - (x1 - x0))^2``.
* :func:`cd_loss` - ``clamp(mean V(data) - trimmed_mean V(negatives), min=-beta)``.
* :func:`energy_matching_loss` - both in one forward pass of V (what DDP needs).

The network has no time input: V is time-independent.

Example:
    >>> import torch
    >>> from torch import nn
    >>> V = nn.Linear(2, 1)
    >>> x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    >>> loss = flow_loss(V, linear_path(x0, x1, torch.full((4,), 0.5)))
    >>> bool(torch.isclose(loss, ((-V.weight - 1.0) ** 2).mean()))
    True
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.errors import InvalidValueError
from energyflow.spaces import Space
from energyflow.tree import State


@attrs.frozen(eq=False)
class PathSample:
    """A batch on the linear path.

    Attributes:
        x0 (Tensor): source (noise) points ``(B, *event)``.
        x1 (Tensor): data points ``(B, *event)``.
        t (Tensor): times ``(B,)`` in [0, 1].
        xt (Tensor): ``(1 - t) x0 + t x1``, ``(B, *event)``.
        velocity (Tensor): target ``x1 - x0``, ``(B, *event)``.
    """

    x0: State
    x1: State
    t: Tensor
    xt: State
    velocity: State


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def linear_path(x0: State, x1: State, t: Tensor) -> PathSample:
    """The straight path from ``x0`` (t = 0) to ``x1`` (t = 1).

    States may be pytrees (dicts of tensors): the path interpolates the coordinate leaves;
    carried leaves (masks) come from ``x1``, which the coupling paired with a source of
    the same structure.
    """
    if isinstance(x0, Tensor) and isinstance(x1, Tensor):
        if x0.shape != x1.shape or t.shape != (x0.shape[0],):
            raise InvalidValueError(f"need x0, x1 of equal shape and t of shape (B,); got {tuple(x0.shape)}, "
                                    f"{tuple(x1.shape)}, {tuple(t.shape)}")
        tb = _bcast(t, x0)
        return PathSample(x0, x1, t, (1 - tb) * x0 + tb * x1, x1 - x0)
    bad = [f"{tuple(a.shape)} vs {tuple(b.shape)}" for a, b in zip(tree.coordinates(x0), tree.coordinates(x1))
           if a.shape != b.shape]
    if bad or not isinstance(x0, type(x1)) or t.shape != (tree.batch_size(x1),):
        raise InvalidValueError(f"need x0, x1 of equal structure and shapes and t of shape (B,); got "
                                f"{tree.describe(x0)}, {tree.describe(x1)}, {tuple(t.shape)}")
    xt = tree.map(lambda b, a: (1 - _bcast(t, a)) * a + _bcast(t, a) * b, x1, x0)
    return PathSample(x0, x1, t, xt, tree.map(torch.sub, x1, x0))


def flow_weight(t: Tensor, tau_star: float) -> Tensor:
    """w(t) = 1 for t < tau_star, (1 - t) / (1 - tau_star) on [tau_star, 1]; 1 everywhere if tau_star = 1."""
    if tau_star >= 1.0:
        return torch.ones_like(t)
    return torch.where(t < tau_star, torch.ones_like(t), ((1.0 - t) / (1.0 - tau_star)).clamp_min(0.0))


def _energies(potential: nn.Module, x: State) -> Tensor:
    e = potential(x)
    n = tree.batch_size(x)
    if e.dim() == 2 and e.shape[1] == 1:
        e = e.squeeze(1)
    if e.shape != (n,):
        raise InvalidValueError(f"the potential returned {tuple(e.shape)} for a batch of {n}; it must return (B,) or (B, 1)")
    return e


def _grad(energies: Tensor, xt: State, coords: list[Tensor]) -> State:
    return tree.grad(energies.sum(), xt, coords, create_graph=True)


def _flow_term(grad: State, path: PathSample, tau_star: float, space: Space | None = None) -> Tensor:
    if space is not None:
        # On a constrained space only the gradient's component along it moves a state
        # (samplers descend space.tangent(grad V)); the target x1 - x0 already lies in it.
        grad = space.tangent(grad)
    # The mean over every coordinate of the state (all coordinate leaves together).
    sq = tree.ravel(tree.map(lambda g, v: (-g - v) ** 2, grad, path.velocity))
    return (flow_weight(path.t, tau_star) * sq.mean(-1)).mean()


def flow_loss(potential: nn.Module, path: PathSample, tau_star: float = 1.0, space: Space | None = None) -> Tensor:
    """OT flow loss on -grad V along the path (differentiable in V's parameters).

    Args:
        potential (nn.Module): V, ``(B, *event) -> (B,)`` or ``(B, 1)``.
        path (PathSample): the paired batch on the linear path.
        tau_star (float): flow weight ramp start (1 = unweighted).
        space (Space | None): the states' space; its ``tangent`` projects grad V first
            (None: Euclidean).

    Returns:
        Tensor: scalar loss.
    """
    xt, coords = tree.requires_grad(path.xt)
    return _flow_term(_grad(_energies(potential, xt), xt, coords), path, tau_star, space)


def trimmed_mean(values: Tensor, alpha: float) -> Tensor:
    """Mean after dropping the fraction ``alpha`` of the highest values."""
    if not 0.0 <= alpha < 1.0:
        raise InvalidValueError(f"trim fraction must lie in [0, 1), got {alpha}")
    keep = values.shape[0] - int(alpha * values.shape[0])
    if keep == values.shape[0]:
        return values.mean()
    return torch.topk(values, keep, largest=False).values.mean()


def cd_term(e_data: Tensor, e_neg: Tensor, alpha: float = 0.0, beta: float | None = None) -> Tensor:
    """``clamp(mean e_data - trimmed_mean(e_neg, alpha), min=-beta)`` (no clamp if beta is None)."""
    diff = e_data.mean() - trimmed_mean(e_neg, alpha)
    return diff if beta is None else diff.clamp(min=-beta)


def cd_loss(potential: nn.Module, x_data: Tensor, x_neg: Tensor, alpha: float = 0.0, beta: float | None = None) -> Tensor:
    """Contrastive divergence on data and (detached) negatives."""
    return cd_term(_energies(potential, x_data), _energies(potential, tree.detach(x_neg)), alpha, beta)


@attrs.frozen(eq=False)
class LossOutput:
    """The total loss and its parts (detached floats for logging)."""

    loss: Tensor
    flow: float
    cd: float
    energy_data: float
    energy_negative: float


def energy_matching_loss(
    potential: nn.Module,
    path: PathSample,
    x_data: Tensor | None = None,
    x_neg: Tensor | None = None,
    *,
    tau_star: float = 1.0,
    lambda_cd: float = 0.0,
    alpha: float = 0.0,
    beta: float | None = None,
    flow_scale: float = 1.0,
    space: Space | None = None,
) -> LossOutput:
    """L = flow_scale * L_OT(w) + lambda_cd * CD, with one forward pass of V over all inputs.

    One forward keeps DistributedDataParallel happy (it expects one forward per backward).

    Args:
        potential (nn.Module): V (may be DDP-wrapped).
        path (PathSample): paired batch on the linear path, ``(B, *event)``.
        x_data (Tensor | None): a separate data batch for CD, ``(B_d, *event)``.
        x_neg (Tensor | None): negatives, ``(B_n, *event)`` (treated as constants).
        tau_star, lambda_cd, alpha, beta: as in DESIGN.md section 3.
        flow_scale (float): weight of the flow loss (0 gives a CD-only EBM).
        space (Space | None): the states' space; the flow loss compares
            ``space.tangent(-grad V)`` with ``x1 - x0`` (None: Euclidean).
    """
    use_cd = lambda_cd > 0 and x_data is not None and x_neg is not None
    xt, coords = tree.requires_grad(path.xt)
    parts = [xt] + ([tree.detach(x_data), tree.detach(x_neg)] if use_cd else [])
    energies = _energies(potential, tree.cat(parts) if len(parts) > 1 else xt)
    b = tree.batch_size(xt)
    if flow_scale != 0.0:
        flow = _flow_term(_grad(energies[:b], xt, coords), path, tau_star, space)
        # + 0 * sum(V): parameters that grad V cannot see (the output bias) still join the
        # backward pass with a zero gradient; DDP fails on parameters that get no gradient.
        loss = flow_scale * flow + 0.0 * energies.sum()
    else:  # CD-only EBM: skip the double backward entirely
        flow = torch.zeros((), device=coords[0].device)
        loss = 0.0 * energies[:b].sum()
    cd_value = e_d = e_n = float("nan")
    if use_cd:
        nd = tree.batch_size(x_data)
        e_data, e_neg = energies[b : b + nd], energies[b + nd :]
        cd = cd_term(e_data, e_neg, alpha, beta)
        loss = loss + lambda_cd * cd
        cd_value, e_d, e_n = float(cd.detach()), float(e_data.detach().mean()), float(e_neg.detach().mean())
    return LossOutput(loss, float(flow.detach()), cd_value, e_d, e_n)
