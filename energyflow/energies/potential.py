"""Learned and analytic potentials (coupling ``"energy"``: density exp(-V/eps)).

Example:
    >>> import torch
    >>> from torch import nn
    >>> V = Potential(nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1)))
    >>> V(torch.zeros(5, 2)).shape
    torch.Size([5])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.energies.base import Energy, flatten_event
from energyflow.errors import InvalidTypeError, InvalidValueError


class EnergyShapeError(InvalidValueError):
    """A term returned energies that are not one number per sample."""


class Potential(Energy):
    """Wraps any network ``V_theta`` as an energy term.

    Args:
        net (nn.Module): maps ``(B, *event)`` (or a batch-first pytree state, e.g. a
            dict of node features, adjacency and mask) to ``(B,)`` or ``(B, 1)``.
        scale (float): output multiplier (the reference uses 1000 for CIFAR-10).

    Shapes:
        x: ``(B, *event)`` -> ``(B,)``
    """

    coupling = "energy"

    def __init__(self, net: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise InvalidTypeError(f"Potential wraps an nn.Module, got {type(net).__name__}")
        self.net = net
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        n = x.shape[0] if isinstance(x, Tensor) else tree.batch_size(x)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out.squeeze(1)
        if out.dim() != 1 or out.shape[0] != n:
            raise EnergyShapeError(
                f"{self.name}: the network returned shape {tuple(out.shape)} for a batch of "
                f"{n}; a potential must return (B,) or (B, 1) - end the network "
                "with a layer of one output and reduce over any other dimensions"
            )
        return out * self.scale if self.scale != 1.0 else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _as_tensor(v, name: str) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.get_default_dtype()) if not isinstance(v, Tensor) else v
    if not torch.isfinite(t).all():
        raise InvalidValueError(f"{name} contains NaN or inf")
    return t


class GaussianPotential(Energy):
    """V(x) = -log N(x; mean, cov) (normalised, so log Z = 0 at eps = 1).

    Args:
        mean (Tensor): shape ``(d,)``.
        cov (Tensor): shape ``(d, d)``, symmetric positive definite.

    Shapes:
        x: ``(B, *event)`` with ``prod(event) == d`` -> ``(B,)``
    """

    coupling = "energy"

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        super().__init__()
        mean = _as_tensor(mean, "mean")
        cov = _as_tensor(cov, "cov")
        d = mean.shape[-1]
        if mean.dim() != 1 or cov.shape != (d, d):
            raise InvalidValueError(f"mean must be (d,) and cov (d, d); got {tuple(mean.shape)} and {tuple(cov.shape)}")
        try:
            chol = torch.linalg.cholesky(cov)
        except RuntimeError as err:
            raise InvalidValueError("cov must be symmetric positive definite") from err
        self.register_buffer("mean", mean)
        self.register_buffer("scale_tril", chol)

    @property
    def covariance(self) -> Tensor:
        return self.scale_tril @ self.scale_tril.T

    def distribution(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(self.mean, scale_tril=self.scale_tril)

    def forward(self, x: Tensor) -> Tensor:
        # -log N(x; m, L L^T) = |L^-1 (x - m)|^2 / 2 + log det L + d/2 log(2 pi), computed
        # directly: building a validated MultivariateNormal on every call cost ~3x more.
        z = flatten_event(x) - self.mean
        # One solve with the batch as right-hand sides (a batched solve broadcasts L to
        # every sample: 20-50x slower at d = 100).
        w = torch.linalg.solve_triangular(self.scale_tril, z.reshape(-1, z.shape[-1]).T, upper=False).T
        w = w.reshape(z.shape)
        d = z.shape[-1]
        log_det = torch.log(torch.diagonal(self.scale_tril)).sum()
        return 0.5 * (w * w).sum(-1) + log_det + 0.5 * d * math.log(2.0 * math.pi)


class GaussianMixture(Energy):
    """V(x) = -log sum_k w_k N(x; m_k, Sigma_k) (normalised).

    Args:
        means (Tensor): shape ``(K, d)``.
        covs (Tensor | float): ``(K, d, d)`` covariances, ``(K,)`` isotropic variances,
            or one isotropic variance for all components.
        weights (Tensor | None): shape ``(K,)``, non-negative; uniform if None.
    """

    coupling = "energy"

    def __init__(self, means: Tensor, covs: Tensor | float = 1.0, weights: Tensor | None = None) -> None:
        super().__init__()
        means = _as_tensor(means, "means")
        if means.dim() != 2:
            raise InvalidValueError(f"means must be (K, d), got {tuple(means.shape)}")
        k, d = means.shape
        covs = _as_tensor(covs, "covs")
        if covs.dim() == 0:
            covs = covs.expand(k)
        if covs.dim() == 1:
            covs = covs[:, None, None] * torch.eye(d, dtype=means.dtype)
        if covs.shape != (k, d, d):
            raise InvalidValueError(f"covs must be (K, d, d), (K,) or a number; got {tuple(covs.shape)}")
        weights = torch.full((k,), 1.0 / k, dtype=means.dtype) if weights is None else _as_tensor(weights, "weights")
        if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
            raise InvalidValueError("weights must be (K,), non-negative and not all zero")
        self.register_buffer("means", means)
        self.register_buffer("scale_trils", torch.linalg.cholesky(covs))
        self.register_buffer("log_weights", torch.log(weights / weights.sum()))

    def distribution(self) -> torch.distributions.MixtureSameFamily:
        D = torch.distributions
        return D.MixtureSameFamily(
            D.Categorical(logits=self.log_weights),
            D.MultivariateNormal(self.means, scale_tril=self.scale_trils),
        )

    def forward(self, x: Tensor) -> Tensor:
        return -self.distribution().log_prob(flatten_event(x))


class DoubleWell(Energy):
    """V(x) = barrier * (x_0^2 - 1)^2 + 0.5 * sum_{i>0} x_i^2.

    Two modes at x_0 = +-1 separated by a barrier of height ``barrier`` at x_0 = 0.

    Args:
        barrier (float): barrier height (> 0).
    """

    coupling = "energy"

    def __init__(self, barrier: float = 2.0) -> None:
        super().__init__()
        if not barrier > 0:
            raise InvalidValueError(f"barrier must be > 0, got {barrier}")
        self.barrier = float(barrier)

    def forward(self, x: Tensor) -> Tensor:
        x = flatten_event(x)
        return self.barrier * (x[:, 0] ** 2 - 1.0) ** 2 + 0.5 * (x[:, 1:] ** 2).sum(-1)

    def log_partition(self, dim: int) -> float:
        """log Z of exp(-V) in ``dim`` dimensions (1-D quadrature times a Gaussian)."""
        grid = torch.linspace(-6, 6, 200001, dtype=torch.float64)
        v = self.barrier * (grid**2 - 1) ** 2
        z0 = torch.trapezoid(torch.exp(-v), grid).item()
        return math.log(z0) + 0.5 * (dim - 1) * math.log(2 * math.pi)
