"""Distribution distances shared by domains: W2 (exact OT via POT), MMD, Frechet distance; Spearman's rho.

All functions take two batches of points (or Gaussian moments), compute in float64 on
the CPU and return a Python ``float``. They are deterministic: nothing here draws random
numbers.

Example:
    >>> import torch
    >>> from energyflow.metrics import wasserstein2, frechet_distance
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> round(wasserstein2(x, x + torch.tensor([3.0, 4.0])), 6)    # a translation by (3, 4)
    5.0
    >>> frechet_distance(torch.zeros(2), torch.eye(2), torch.ones(2), torch.eye(2))
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from energyflow.errors import InvalidValueError

__all__ = [
    "mean_pairwise_distance",
    "psnr",
    "ssim",
    "frechet_distance",
    "frechet_distance_from_features",
    "median_heuristic_bandwidth",
    "mmd",
    "spearman",
    "wasserstein2",
]

# Multipliers of the median pairwise distance used as default MMD bandwidths.
DEFAULT_BANDWIDTH_FACTORS = (0.5, 1.0, 2.0)


def _as_points(x, name: str, min_points: int = 1) -> Tensor:
    """Returns ``x`` as a float64 CPU tensor of shape ``(B, d)`` after checking it."""
    t = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x)
    if t.dim() != 2:
        raise InvalidValueError(
            f"{name} must be a batch of points of shape (B, d), got shape {tuple(t.shape)}; "
            "flatten each sample first, e.g. x.flatten(1)"
        )
    if t.shape[0] < min_points:
        raise InvalidValueError(f"{name} needs at least {min_points} point(s), got {t.shape[0]}")
    if t.shape[1] == 0:
        raise InvalidValueError(f"{name} has zero features per point (shape {tuple(t.shape)})")
    t = t.to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise InvalidValueError(f"{name} contains NaN or inf; the metric is undefined for such samples")
    return t


def _check_same_dim(x: Tensor, y: Tensor) -> None:
    if x.shape[1] != y.shape[1]:
        raise InvalidValueError(
            f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}"
        )


def wasserstein2(x: Tensor, y: Tensor, num_iter_max: int = 1_000_000) -> float:
    """Exact 2-Wasserstein distance between two empirical distributions.

    Solves the discrete optimal transport problem between the uniform distributions on
    the points of ``x`` and ``y`` with squared Euclidean cost (POT's ``ot.emd2`` on
    ``ot.dist``) and returns the square root of the optimal cost. The two clouds may have
    different sizes. The exact solver costs roughly O(n^3): keep each cloud to a few
    thousand points.

    Args:
        x (Tensor): shape ``(B1, d)``.
        y (Tensor): shape ``(B2, d)``.
        num_iter_max (int): iteration cap of the network simplex solver.

    Returns:
        float: W2(x, y) >= 0, in the units of the data.

    Raises:
        ValueError: the inputs are not non-empty ``(B, d)`` batches of the same ``d``,
            or contain NaN/inf.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [2.0]])
        >>> round(wasserstein2(x, torch.tensor([[1.0]])), 6)    # both points move by 1
        1.0
    """
    import ot  # POT; imported here so that importing energyflow.metrics stays light

    x = _as_points(x, "x")
    y = _as_points(y, "y")
    _check_same_dim(x, y)
    xn, yn = x.numpy(), y.numpy()
    a = np.full(xn.shape[0], 1.0 / xn.shape[0])
    b = np.full(yn.shape[0], 1.0 / yn.shape[0])
    cost_matrix = ot.dist(xn, yn, metric="sqeuclidean")
    cost = float(ot.emd2(a, b, cost_matrix, numItermax=int(num_iter_max)))
    return float(np.sqrt(max(cost, 0.0)))


def median_heuristic_bandwidth(x: Tensor, y: Tensor) -> float:
    """Median of the pairwise Euclidean distances in the pooled sample ``x ∪ y``.

    Args:
        x (Tensor): shape ``(B1, d)``.
        y (Tensor): shape ``(B2, d)``.

    Returns:
        float: the median distance over distinct pairs (1.0 if all points coincide).

    Example:
        >>> import torch
        >>> median_heuristic_bandwidth(torch.tensor([[0.0]]), torch.tensor([[2.0]]))
        2.0
    """
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    _check_same_dim(x, y)
    z = torch.cat([x, y])
    d = torch.cdist(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    pair = d[iu[0], iu[1]]
    if pair.numel() == 0:
        return 1.0
    med = float(pair.median())
    return med if med > 0 else 1.0


def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy MMD^2(P, Q).

    The kernel is a sum of Gaussian RBF kernels,
    ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))``, over the bandwidths ``s``. By default
    the bandwidths are the median heuristic (the median pairwise distance in the pooled
    sample, see :func:`median_heuristic_bandwidth`) times ``(0.5, 1, 2)``. The estimate is

        mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j),

    which is unbiased, so for two samples of the same distribution it fluctuates around
    zero and can be slightly negative. Memory is O((B1 + B2)^2 * len(bandwidths)).

    Args:
        x (Tensor): shape ``(B1, d)`` with ``B1 >= 2``.
        y (Tensor): shape ``(B2, d)`` with ``B2 >= 2``.
        bandwidths (Sequence[float] | None): kernel widths ``s > 0``; ``None`` uses the
            median heuristic times ``(0.5, 1, 2)``.

    Returns:
        float: the unbiased MMD^2 estimate (not its square root).

    Raises:
        ValueError: bad shapes, fewer than two points in a set, or non-positive bandwidths.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
        >>> abs(mmd(x, y)) < 0.01, mmd(x, y + 2.0) > 0.1
        (True, True)
    """
    x = _as_points(x, "x", min_points=2)
    y = _as_points(y, "y", min_points=2)
    _check_same_dim(x, y)
    if bandwidths is None:
        med = median_heuristic_bandwidth(x, y)
        bandwidths = [med * f for f in DEFAULT_BANDWIDTH_FACTORS]
    bw = torch.as_tensor(list(bandwidths), dtype=torch.float64)
    if bw.dim() != 1 or bw.numel() == 0 or not torch.isfinite(bw).all() or (bw <= 0).any():
        raise InvalidValueError(f"bandwidths must be a non-empty list of positive numbers, got {list(bandwidths)}")

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        sq = torch.cdist(a, b).pow(2)
        return torch.exp(-sq.unsqueeze(-1) / (2.0 * bw.pow(2))).sum(-1)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    term_xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    term_yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(term_xx + term_yy - 2.0 * kxy.mean())


def _psd_sqrt(c: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix through its eigendecomposition."""
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0.0).sqrt()) @ v.T


def _as_moments(mu, cov, which: str) -> tuple[Tensor, Tensor]:
    mu = torch.as_tensor(mu.detach() if isinstance(mu, Tensor) else mu).to("cpu", torch.float64)
    cov = torch.as_tensor(cov.detach() if isinstance(cov, Tensor) else cov).to("cpu", torch.float64)
    if mu.dim() != 1:
        raise InvalidValueError(f"mu{which} must have shape (d,), got {tuple(mu.shape)}")
    d = mu.shape[0]
    if cov.shape != (d, d):
        raise InvalidValueError(f"cov{which} must have shape (d, d) = ({d}, {d}) to match mu{which}, got {tuple(cov.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
        raise InvalidValueError(f"mu{which} or cov{which} contains NaN or inf")
    scale = cov.abs().max().clamp_min(1.0)
    if (cov - cov.T).abs().max() > 1e-6 * scale:
        raise InvalidValueError(f"cov{which} must be symmetric (a covariance matrix)")
    return mu, 0.5 * (cov + cov.T)


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Frechet distance between the Gaussians N(mu1, cov1) and N(mu2, cov2).

    ``FD = |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^{1/2} cov2 cov1^{1/2})^{1/2})``,
    the squared 2-Wasserstein distance between the Gaussians (the quantity FID reports).
    The trace of the matrix square root is the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix ``cov1^{1/2} cov2 cov1^{1/2}``, computed in
    float64 with ``eigh``; tiny negative eigenvalues from round-off are clipped to zero.

    Args:
        mu1 (Tensor): shape ``(d,)``.
        cov1 (Tensor): shape ``(d, d)``, symmetric positive semi-definite.
        mu2 (Tensor): shape ``(d,)``.
        cov2 (Tensor): shape ``(d, d)``, symmetric positive semi-definite.

    Returns:
        float: FD >= 0 (clipped at zero against round-off).

    Raises:
        ValueError: mismatched shapes, non-symmetric covariances, NaN or inf.

    Example:
        >>> import torch
        >>> round(frechet_distance(torch.zeros(1), 4 * torch.eye(1), torch.zeros(1), torch.eye(1)), 6)
        1.0
    """
    mu1, cov1 = _as_moments(mu1, cov1, "1")
    mu2, cov2 = _as_moments(mu2, cov2, "2")
    if mu1.shape != mu2.shape:
        raise InvalidValueError(f"the two Gaussians have different dimensions: {mu1.shape[0]} and {mu2.shape[0]}")
    s1 = _psd_sqrt(cov1)
    m = s1 @ cov2 @ s1
    eig = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0.0)
    fd = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2.0 * eig.sqrt().sum()
    return max(float(fd), 0.0)


def frechet_distance_from_features(f1: Tensor, f2: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature vectors.

    Fits the mean and the unbiased covariance (divisor ``B - 1``) of each set and calls
    :func:`frechet_distance`.

    Args:
        f1 (Tensor): features, shape ``(B1, d)`` with ``B1 >= 2``.
        f2 (Tensor): features, shape ``(B2, d)`` with ``B2 >= 2``.

    Returns:
        float: FD between the fitted Gaussians.

    Example:
        >>> import torch
        >>> f = torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]])
        >>> round(frechet_distance_from_features(f, f), 9), round(frechet_distance_from_features(f, f + 1.0), 9)
        (0.0, 2.0)
    """
    f1 = _as_points(f1, "f1", min_points=2)
    f2 = _as_points(f2, "f2", min_points=2)
    _check_same_dim(f1, f2)
    return frechet_distance(f1.mean(0), torch.cov(f1.T).reshape(f1.shape[1], -1),
                            f2.mean(0), torch.cov(f2.T).reshape(f2.shape[1], -1))


def _images(x, name: str) -> Tensor:
    t = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x).to(torch.float64).cpu()
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise InvalidValueError(f"{name} must be images (B, C, H, W) or (B, H, W), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InvalidValueError(f"{name} contains NaN or inf")
    return t


def psnr(x: Tensor, reference: Tensor, *, data_range: float = 2.0, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        x (Tensor): images ``(B, C, H, W)``.
        reference (Tensor): ground truth, same shape (or broadcastable).
        data_range (float): max - min of the pixel range (2 for [-1, 1]).
        mask (Tensor | None): 1 where the error counts (e.g. the inpainted region),
            broadcastable to ``(B, C, H, W)``; all pixels if None.

    Returns:
        Tensor: shape ``(B,)``, float64.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1, 2, 2); y = x.clone(); y[..., 0, 0] = 0.2
        >>> round(float(psnr(y, x)), 3)   # MSE 0.01, range 2 -> 10 log10(4 / 0.01)
        26.021
    """
    a, b = _images(x, "x"), _images(reference, "reference")
    if not data_range > 0:
        raise InvalidValueError(f"data_range must be > 0, got {data_range}")
    err = (a - b) ** 2
    if mask is None:
        mse = err.reshape(err.shape[0], -1).mean(-1)
    else:
        m = torch.as_tensor(mask, dtype=torch.float64).expand_as(err)
        count = m.reshape(m.shape[0], -1).sum(-1)
        if (count == 0).any():
            raise InvalidValueError("the PSNR mask selects no pixel")
        mse = (err * m).reshape(err.shape[0], -1).sum(-1) / count
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def ssim(x: Tensor, reference: Tensor, *, data_range: float = 2.0, window_size: int = 7, sigma: float = 1.5) -> Tensor:
    """Structural similarity per image (Wang et al. 2004), Gaussian window, valid positions.

    The window shrinks to the image size for small images (8x8 digits use 7x7 windows).

    Args:
        x (Tensor): images ``(B, C, H, W)``.
        reference (Tensor): ground truth, same shape.
        data_range (float): pixel range (2 for [-1, 1]).
        window_size (int): Gaussian window side (odd).
        sigma (float): Gaussian window width.

    Returns:
        Tensor: shape ``(B,)`` in [-1, 1]; 1 for identical images.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 1, 8, 8) * 2 - 1
        >>> ssim(x, x).tolist()
        [1.0, 1.0]
    """
    a, b = _images(x, "x"), _images(reference, "reference").expand_as(_images(x, "x"))
    h, w = a.shape[-2:]
    k = min(window_size, h, w)
    coords = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(a.shape[1], 1, k, k).contiguous()

    def filt(z: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(z, window, groups=a.shape[1])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(s.shape[0], -1).mean(-1)


def mean_pairwise_distance(x: Tensor) -> float:
    """Mean Euclidean distance over all pairs of a set ``(B, *event)`` (a diversity measure).

    Example:
        >>> import torch
        >>> mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        5.0
    """
    t = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x).to(torch.float64).cpu()
    t = t.reshape(t.shape[0], -1)
    if t.shape[0] < 2:
        raise InvalidValueError("need at least two samples for a pairwise distance")
    d = torch.cdist(t, t)
    n = t.shape[0]
    return float(d.sum() / (n * (n - 1)))


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 2 points or a constant input.

    Example:
        >>> spearman([1, 2, 3, 4], [10, 20, 40, 30])
        0.8
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InvalidValueError(f"spearman needs two arrays of one length, got {a.shape} and {b.shape}")

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]

    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")
