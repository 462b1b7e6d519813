"""Every sampler has the right law on every space (issue 9, item 1).

Target: U(x) = 1/2 |x|^2 - <B, x> with a fixed *ambient* B (asymmetric, with a diagonal,
masked entries and a centre of mass), sampled at temperature T. On a linear constraint
set S with orthogonal projection P, the law exp(-U / T) w.r.t. Lebesgue measure on S is
the Gaussian with mean P B and covariance T times the identity of S (in the metric S
inherits, which ``space.sqnorm`` measures). So with D the free dimension of S:

    E[x] = P B,    E[sqnorm(x - P B)] = T * D,

and a free entry a_ij of a symmetric adjacency has variance T / 2 (it counts twice in
the Frobenius metric). Every check uses 4000 chains; tolerances are 5 standard errors
plus the known O(dt) bias of unadjusted Langevin, T / (1 - dt / 2) - T (0.5% at
dt = 0.01). Negative controls rerun with what the code did before this change and must
fail: the noise (G + G^T) / sqrt(2) (unit variance per entry, i.e. twice the
temperature), and the ambient gradient in HMC and in MALA (the latter with a term that
vanishes on the space but whose gradient points off it: 36-200 standard errors off).
"""

from __future__ import annotations

import math

import pytest
import torch

import energyflow as ef
from energyflow.spaces import SymmetricMasked

F64 = torch.float64
CHAINS = 4000
T = 0.7

SPACES = {
    "euclidean": lambda: ef.Euclidean((3, 2)),
    "symmetric": lambda: ef.SymmetricMasked(4),
    "symmetric_masked": lambda: ef.SymmetricMasked(5, mask=torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])),
    "bond_types": lambda: ef.SymmetricMasked(3, channels=2),
    "zero_com": lambda: ef.ZeroCenterOfMass(4, 3),
}


def free_dimension(space) -> int:
    if isinstance(space, SymmetricMasked):
        real = int(space.mask.sum()) if space.mask is not None else space.num_nodes
        return real * (real - 1) // 2 * (space.channels or 1)
    if isinstance(space, ef.ZeroCenterOfMass):
        n, d = space.event_shape
        return (n - 1) * d
    return math.prod(space.event_shape)


class Quadratic(ef.Energy):
    """U(x) = 1/2 |x|^2 - <B, x> in the ambient coordinates."""

    def __init__(self, b: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("b", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim()))
        return 0.5 * x.pow(2).sum(dims) - (x * self.b).sum(dims)


SAMPLERS = {
    "langevin": lambda: ef.Langevin(step_size=0.01, num_steps=800, schedule=T),
    "mala": lambda: ef.MALA(step_size=0.4, num_steps=150, temperature=T),
    "hmc": lambda: ef.HMC(step_size=0.4, num_leapfrog=4, num_steps=60, temperature=T),
}


def run(space_name: str, sampler_name: str, seed: int = 0):
    space = SPACES[space_name]()
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(1, *space.event_shape, generator=g, dtype=F64) + 0.5
    field = ef.compile(Quadratic(b), space)
    x0 = space.noise(CHAINS, generator=g, dtype=F64)
    out = SAMPLERS[sampler_name]().run(field, x0, generator=g)
    return space, space.project(b), out.samples


def law_errors(space, mean, x) -> tuple[float, float]:
    """(largest |mean error| in standard errors, relative error of E sqnorm / (T D))."""
    d = free_dimension(space)
    centred = space.flatten(x - mean)  # coordinates with variance T each (or correlated for zero_com)
    se = math.sqrt(T / CHAINS)
    mean_err = float(centred.mean(0).abs().max()) / se
    ratio = float(space.sqnorm(x - mean).mean()) / (T * d)
    return mean_err, ratio - 1.0


def in_space(space, x) -> bool:
    return bool(torch.allclose(space.project(x), x, atol=1e-10))


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("space", sorted(SPACES))
def test_stationary_law_on_every_space(space, sampler):
    sp, mean, x = run(space, sampler)
    assert in_space(sp, x)
    mean_err, rel = law_errors(sp, mean, x)
    d = free_dimension(sp)
    # E sqnorm / (T D) has relative se sqrt(2 / (D * CHAINS)); the mean check is per coordinate
    # (5.5 se over at most 12 coordinates keeps the family-wise false alarm below 1e-6).
    bias = 0.005 if sampler == "langevin" else 0.0
    assert mean_err < 5.5, (space, sampler, mean_err)
    assert abs(rel) < 5 * math.sqrt(2 / (d * CHAINS)) + bias, (space, sampler, rel)


def test_symmetric_free_entries_have_variance_half_the_temperature():
    sp, mean, x = run("symmetric", "langevin")
    a = (x - mean)[:, 0, 1]
    # var of a variance estimate: 2 var^2 / CHAINS -> se 0.0055 at var 0.35.
    assert abs(float(a.var()) - T / 2) < 5 * math.sqrt(2 / CHAINS) * T / 2 + 0.005 * T


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_negative_control_the_old_noise_runs_at_twice_the_temperature(sampler, monkeypatch):
    def old_noise(self, x, generator=None):
        g = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return (g + g.transpose(1, 2)) / math.sqrt(2.0) * self._pair_mask(x)

    monkeypatch.setattr(SymmetricMasked, "randn_like", old_noise)
    sp, mean, x = run("symmetric", sampler)
    _, rel = law_errors(sp, mean, x)
    d = free_dimension(sp)
    assert abs(rel) > 5 * math.sqrt(2 / (d * CHAINS)) + 0.005, (sampler, rel)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_gradient_flow_reaches_the_mode_on_the_space(space):
    sp = SPACES[space]()
    g = torch.Generator().manual_seed(1)
    b = torch.randn(1, *sp.event_shape, generator=g, dtype=F64)
    field = ef.compile(Quadratic(b), sp)
    out = ef.GradientFlow(step_size=0.1, num_steps=300, temperature=0.0).run(field, sp.noise(8, generator=g, dtype=F64))
    # (1 - dt)^300 = 2e-14: the flow has converged to P B.
    assert torch.allclose(out.samples, sp.project(b).expand_as(out.samples), atol=1e-10)


def test_field_gradient_lies_on_the_space():
    sp = ef.SymmetricMasked(4, mask=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    b = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    field = ef.compile(Quadratic(b), sp)
    x = sp.noise(3, generator=torch.Generator().manual_seed(3), dtype=F64)
    _, grad = field.energy_and_grad(x)
    assert torch.allclose(grad, sp.project(x - b))  # the projected ambient gradient x - B


@pytest.mark.parametrize("space", ["symmetric", "zero_com"])
def test_pyro_nuts_refuses_constrained_spaces(space):
    sp = SPACES[space]()
    field = ef.compile(Quadratic(torch.zeros(1, *sp.event_shape, dtype=F64)), sp)
    with pytest.raises(ef.FieldError, match="PyroNUTS samples unconstrained"):
        ef.PyroNUTS(num_samples=2, warmup_steps=2).run(field, sp.noise(2, dtype=F64))


@pytest.mark.parametrize("space", ["zero_com", "symmetric_masked"])
def test_negative_control_hmc_with_the_ambient_gradient(space, monkeypatch):
    """Before this change the field returned the ambient gradient: its component off the
    space (here the constant -(I - P) B) entered HMC's momentum and kinetic energy."""
    monkeypatch.setattr(type(SPACES[space]()), "tangent", lambda self, v: v)
    sp, mean, x = run(space, "hmc")
    mean_err, rel = law_errors(sp, mean, x)
    assert mean_err > 5.5 or abs(rel) > 5 * math.sqrt(2 / (free_dimension(sp) * CHAINS))


class OffSpace(ef.Energy):
    """phi(x) = <u, x> (1 + |x|^2) / 2 with u orthogonal to the space: zero on the space, so
    the target law is unchanged, but its ambient gradient (1 + |x|^2) u / 2 + ... points off
    the space and varies with x, which a sampler must not see."""

    def __init__(self, u: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("u", u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim()))
        return (x * self.u).sum(dims) * (1 + x.pow(2).sum(dims)) / 2


def run_with_off_space_term(space_name: str, sampler_name: str, seed: int = 0):
    space = SPACES[space_name]()
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(1, *space.event_shape, generator=g, dtype=F64) + 0.5
    r = 3.0 * torch.randn(1, *space.event_shape, generator=g, dtype=F64)
    field = ef.compile(Quadratic(b) + OffSpace(r - space.project(r)), space)
    out = SAMPLERS[sampler_name]().run(field, space.noise(CHAINS, generator=g, dtype=F64), generator=g)
    return space, space.project(b), out.samples


@pytest.mark.parametrize("space", ["zero_com", "symmetric_masked"])
def test_a_term_that_vanishes_on_the_space_leaves_mala_and_hmc_exact(space):
    for sampler in ("mala", "hmc"):
        sp, mean, x = run_with_off_space_term(space, sampler)
        mean_err, rel = law_errors(sp, mean, x)
        assert mean_err < 5.5 and abs(rel) < 5 * math.sqrt(2 / (free_dimension(sp) * CHAINS)), (sampler, mean_err, rel)


@pytest.mark.parametrize("space", ["zero_com", "symmetric_masked"])
def test_negative_control_mala_with_the_ambient_gradient(space, monkeypatch):
    """With the ambient gradient, MALA's proposal density carries the off-space part,
    which varies with x here, and the chain's law is wrong."""
    monkeypatch.setattr(type(SPACES[space]()), "tangent", lambda self, v: v)
    sp, mean, x = run_with_off_space_term(space, "mala")
    mean_err, rel = law_errors(sp, mean, x)
    assert mean_err > 5.5 or abs(rel) > 5 * math.sqrt(2 / (free_dimension(sp) * CHAINS))
