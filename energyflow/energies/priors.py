"""Priors: negative log-densities of Pyro / torch distributions, a soft box, total variation.

All priors are ``"tempered"`` (multiplied by eps inside samplers).

Example:
    >>> import torch
    >>> p = Prior(torch.distributions.Normal(0.0, 1.0))
    >>> p(torch.zeros(2, 3))   # 3 * 0.5 * log(2 pi)
    tensor([2.7568, 2.7568])
    >>> BoxPrior(-1.0, 1.0, stiffness=10.0)(torch.tensor([[0.0, 2.0]]))
    tensor([10.])
"""

from __future__ import annotations

import torch
from torch import Tensor

from energyflow.energies.base import Energy
from energyflow.errors import InvalidTypeError, InvalidValueError


class Prior(Energy):
    """``-log p(x)`` for any ``torch.distributions`` / Pyro distribution.

    The distribution's log-prob is summed over every dimension but the first, so a
    scalar ``Normal(0, 1)`` acts as an i.i.d. prior on every coordinate.

    Args:
        distribution (torch.distributions.Distribution): the prior.

    Shapes:
        x: ``(B, *event)`` -> ``(B,)``
    """

    coupling = "tempered"

    def __init__(self, distribution: torch.distributions.Distribution) -> None:
        super().__init__()
        if not isinstance(distribution, torch.distributions.Distribution):
            raise InvalidTypeError(f"Prior needs a torch/Pyro distribution, got {type(distribution).__name__}")
        self.distribution = distribution

    def forward(self, x: Tensor) -> Tensor:
        lp = self.distribution.log_prob(x)
        if lp.dim() == 0 or lp.shape[0] != x.shape[0]:
            raise InvalidValueError(
                f"{self.name}: log_prob returned shape {tuple(lp.shape)} for a batch of {x.shape[0]}; "
                "the distribution's event must match the trailing dimensions of x"
            )
        return -lp.reshape(x.shape[0], -1).sum(-1)


class BoxPrior(Energy):
    """A soft box: ``stiffness * sum(relu(x - high)^2 + relu(low - x)^2)``.

    Zero inside ``[low, high]``, quadratic outside; keeps samples in a valid range
    (pixel values in [-1, 1], say) without a hard projection.

    Args:
        low (float | Tensor): lower bound (broadcast to the event shape).
        high (float | Tensor): upper bound.
        stiffness (float): curvature of the walls.
    """

    coupling = "tempered"

    def __init__(self, low: float | Tensor = -1.0, high: float | Tensor = 1.0, stiffness: float = 100.0) -> None:
        super().__init__()
        low_t, high_t = torch.as_tensor(low, dtype=torch.get_default_dtype()), torch.as_tensor(high, dtype=torch.get_default_dtype())
        if (low_t >= high_t).any():
            raise InvalidValueError("BoxPrior needs low < high")
        if not stiffness > 0:
            raise InvalidValueError("stiffness must be > 0")
        self.register_buffer("low", low_t)
        self.register_buffer("high", high_t)
        self.stiffness = float(stiffness)

    def forward(self, x: Tensor) -> Tensor:
        over = torch.relu(x - self.high) ** 2 + torch.relu(self.low - x) ** 2
        return self.stiffness * over.reshape(x.shape[0], -1).sum(-1)


class TotalVariation(Energy):
    """Smoothed isotropic total variation of images ``(B, C, H, W)`` (or ``(B, H, W)``).

    ``weight * sum sqrt(dx^2 + dy^2 + smoothing^2)``; differentiable everywhere.

    Args:
        weight (float): strength.
        smoothing (float): the Huber-like smoothing constant (> 0).
    """

    coupling = "tempered"

    def __init__(self, weight: float = 1.0, smoothing: float = 1e-2) -> None:
        super().__init__()
        if not smoothing > 0:
            raise InvalidValueError("smoothing must be > 0")
        self.weight = float(weight)
        self.smoothing = float(smoothing)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise InvalidValueError(f"{self.name}: expects images (B, [C,] H, W), got shape {tuple(x.shape)}")
        dx = x[..., :, 1:] - x[..., :, :-1]
        dy = x[..., 1:, :] - x[..., :-1, :]
        tv = torch.sqrt(dx[..., :-1, :] ** 2 + dy[..., :, :-1] ** 2 + self.smoothing**2)
        return self.weight * tv.reshape(x.shape[0], -1).sum(-1)
