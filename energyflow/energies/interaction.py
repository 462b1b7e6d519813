"""Interaction energies between the samples of one batch (diversity by repulsion).

An interaction term sees the whole batch and returns per-sample *shares* whose sum is
the pair energy, so the autograd gradient of the summed energies is the right force on
every sample. Both terms are ``"tempered"`` (multiplied by eps inside samplers).

Example:
    >>> import torch
    >>> rep = Repulsion(sigma=1.0)
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> rep(x)            # W = -|x_0 - x_1|^2 / sigma^2, split equally
    tensor([-0.5000, -0.5000])
"""

from __future__ import annotations

import torch
from torch import Tensor

from energyflow.energies.base import Energy
from energyflow.errors import InvalidValueError


class Repulsion(Energy):
    """The paper's quadratic repulsion ``W = -sum_{i<j} ||B (x_i - x_j)||^2 / sigma^2``.

    Args:
        sigma (float): bandwidth; larger is weaker.
        mask (Tensor | None): ``B`` as an element-wise weight broadcastable to the
            event shape (e.g. the unobserved pixels of an inpainting task), or None.
        group_size (int | None): if given, the batch is consecutive groups of this many
            samples (the chains of one measurement) and only samples of the same group
            interact; None lets the whole batch interact.

    Shapes:
        x: ``(B, *event)`` -> ``(B,)``; ``B >= 1`` and divisible by ``group_size``.
    """

    coupling = "tempered"
    couples_batch = True

    def __init__(self, sigma: float = 1.0, mask: Tensor | None = None, group_size: int | None = None) -> None:
        super().__init__()
        if not sigma > 0:
            raise InvalidValueError(f"sigma must be > 0, got {sigma}")
        if group_size is not None and int(group_size) < 1:
            raise InvalidValueError(f"group_size must be >= 1, got {group_size}")
        self.sigma = float(sigma)
        self.group_size = None if group_size is None else int(group_size)
        if mask is not None:
            # Keep a floating mask's own dtype (a float64 mask must not be rounded to float32).
            mask = torch.as_tensor(mask)
            if not mask.is_floating_point():
                mask = mask.to(torch.get_default_dtype())
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        z = x if self.mask is None else x * self.mask.to(x.dtype)
        b = x.shape[0]
        k = b if self.group_size is None else self.group_size
        if b % k != 0:
            raise InvalidValueError(f"{self.name}: batch of {b} is not a whole number of groups of {k}")
        z = z.reshape(b // k, k, -1)  # (groups, k, d)
        sq = (z * z).sum(-1)  # (groups, k)
        # sum_j ||z_i - z_j||^2 = k ||z_i||^2 - 2 z_i . S + sum_j ||z_j||^2 within a group, O(B d).
        per_i = k * sq - 2.0 * (z * z.sum(1, keepdim=True)).sum(-1) + sq.sum(1, keepdim=True)
        return (-0.5 * per_i / self.sigma**2).reshape(b)


class RBFInteraction(Energy):
    """A bounded repulsion ``W = strength * sum_{i<j} exp(-||x_i - x_j||^2 / (2 h^2))``.

    Args:
        bandwidth (float): kernel width h.
        strength (float): energy of two coincident samples.
    """

    coupling = "tempered"
    couples_batch = True

    def __init__(self, bandwidth: float = 1.0, strength: float = 1.0) -> None:
        super().__init__()
        if not bandwidth > 0:
            raise InvalidValueError(f"bandwidth must be > 0, got {bandwidth}")
        self.bandwidth = float(bandwidth)
        self.strength = float(strength)

    def forward(self, x: Tensor) -> Tensor:
        z = x.reshape(x.shape[0], -1)
        sq = (z * z).sum(-1)
        d2 = (sq[:, None] + sq[None, :] - 2.0 * z @ z.T).clamp_min(0.0)
        k = torch.exp(-d2 / (2.0 * self.bandwidth**2))
        k = k - torch.diag_embed(torch.diagonal(k))
        return 0.5 * self.strength * k.sum(-1)
