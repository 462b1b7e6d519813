"""Spaces: base noise with the right law, projections onto the constraints (idempotent),
reproducibility from a generator, validation."""

from __future__ import annotations

import pytest
import torch

import energyflow as ef
from energyflow.spaces import Space

F64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("space", [ef.Euclidean((2, 3)), ef.SymmetricMasked(4), ef.ZeroCenterOfMass(5, 3)])
def test_protocol_shapes_reproducibility_and_idempotent_projection(space):
    assert isinstance(space, Space)
    a = space.noise(7, generator=_g(1), dtype=F64)
    b = space.noise(7, generator=_g(1), dtype=F64)
    assert a.shape == (7, *space.event_shape) and a.dtype == F64
    assert torch.equal(a, b)
    assert torch.allclose(space.project(a), a)  # noise already lies in the space
    x = torch.randn(7, *space.event_shape, generator=_g(2), dtype=F64)
    assert torch.allclose(space.project(space.project(x)), space.project(x))
    r = space.randn_like(x, _g(3))
    assert r.shape == x.shape and r.dtype == x.dtype
    assert isinstance(repr(space), str)


def test_euclidean_noise_is_standard_normal():
    x = ef.Euclidean(3).noise(20000, generator=_g(), dtype=F64)
    # n = 20000: se of the mean 0.007, of the variance 0.01; bounds at ~5 se.
    assert x.mean(0).abs().max() < 0.035 and (x.var(0) - 1).abs().max() < 0.05
    assert ef.Euclidean(3).event_shape == (3,)
    for bad in [(), (0,), (2, -1)]:
        with pytest.raises(ValueError, match="event_shape"):
            ef.Euclidean(bad)


def test_symmetric_masked_noise_law_and_mask():
    n = 4
    space = ef.SymmetricMasked(n, mask=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    a = space.noise(20000, generator=_g(), dtype=F64)
    assert torch.equal(a, a.transpose(-1, -2))
    assert torch.count_nonzero(torch.diagonal(a, dim1=-2, dim2=-1)) == 0
    assert torch.count_nonzero(a[:, 3]) == 0
    free = a[:, 0, 1:3]
    # The projection of standard noise: a free entry (A_ij + A_ji) / 2 has variance 1/2
    # (se 0.005 at n = 20000); the old (G + G^T) / sqrt(2) had 1 and ran samplers at 2 eps.
    assert (free.var(0) - 0.5).abs().max() < 0.025
    # per-sample masks
    per = ef.SymmetricMasked(3, mask=torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    x = per.project(torch.ones(2, 3, 3))
    assert torch.equal(x[0], torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(x[1], 1 - torch.eye(3))
    with pytest.raises(ValueError, match="per-sample"):
        per.project(torch.ones(5, 3, 3))


def test_symmetric_masked_validation():
    with pytest.raises(ValueError, match="num_nodes"):
        ef.SymmetricMasked(0)
    with pytest.raises(ValueError, match="mask"):
        ef.SymmetricMasked(3, mask=torch.ones(4))


def test_zero_center_of_mass_noise_law():
    n, dim = 4, 3
    space = ef.ZeroCenterOfMass(n, dim)
    x = space.noise(20000, generator=_g(), dtype=F64)
    assert torch.allclose(x.mean(1), torch.zeros(20000, dim, dtype=F64), atol=1e-12)
    # The projected standard Gaussian has covariance I - 11^T / n over the points.
    cov = torch.einsum("bi,bj->ij", x[..., 0], x[..., 0]) / x.shape[0]
    expected = torch.eye(n, dtype=F64) - 1.0 / n
    assert (cov - expected).abs().max() < 0.05  # se ~0.007-0.01 per entry
    with pytest.raises(ValueError, match="num_points"):
        ef.ZeroCenterOfMass(1)


def test_noise_on_other_device_request_with_cpu_generator():
    # A CPU generator drives draws for a requested device; on CPU this is the plain path.
    x = ef.Euclidean(2).noise(3, generator=_g(), device="cpu")
    assert x.device.type == "cpu"


@pytest.mark.parametrize(
    "space",
    [ef.Euclidean((2, 3)), ef.SymmetricMasked(4), ef.SymmetricMasked(4, mask=torch.tensor([1.0, 1.0, 1.0, 0.0])),
     ef.SymmetricMasked(3, channels=2), ef.ZeroCenterOfMass(5, 3)],
)
def test_geometry_is_consistent(space):
    """tangent is the orthogonal projection (idempotent, self-adjoint), flatten's norm is
    sqnorm, and the noise is standard in that norm: E sqnorm(noise) = the free dimension."""
    g = _g(4)
    v = torch.randn(6, *space.event_shape, generator=g, dtype=F64)
    w = torch.randn(6, *space.event_shape, generator=g, dtype=F64)
    pv, pw = space.tangent(v), space.tangent(w)
    assert torch.allclose(space.tangent(pv), pv)
    assert torch.allclose((pv * w).sum(), (v * pw).sum())  # <Pv, w> = <v, Pw>
    assert torch.allclose(space.flatten(pv).pow(2).sum(1), space.sqnorm(pv))
    free = {"Euclidean": 6, "ZeroCenterOfMass": 12}.get(type(space).__name__)
    if free is None:  # SymmetricMasked: pairs among real nodes, times channels
        real = int(space.mask.sum()) if space.mask is not None else space.num_nodes
        free = real * (real - 1) // 2 * (space.channels or 1)
    noise = space.noise(20000, generator=_g(5), dtype=F64)
    # sqnorm of standard noise on a D-dimensional space is chi^2_D: mean D, se sqrt(2D/20000).
    assert abs(float(space.sqnorm(noise).mean()) - free) < 5 * (2 * free / 20000) ** 0.5


def test_bond_type_adjacency_is_symmetric_per_channel():
    space = ef.SymmetricMasked(3, mask=torch.tensor([1.0, 1.0, 0.0]), channels=4)
    a = space.noise(5, generator=_g(6), dtype=F64)
    assert a.shape == (5, 3, 3, 4) and torch.equal(a, a.transpose(1, 2))
    assert torch.count_nonzero(a[:, 2]) == 0 and torch.count_nonzero(a[:, :, 2]) == 0
    assert torch.count_nonzero(torch.diagonal(a, dim1=1, dim2=2)) == 0
    assert space.flatten(a).shape == (5, 3 * 4)
    with pytest.raises(ValueError, match="channels"):
        ef.SymmetricMasked(3, channels=0)
