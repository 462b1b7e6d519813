"""HMC: exactness on random Gaussian targets, mass matrix, divergences, validation.

Same statistical design as test_mala.py: thousands of independent chains from one
far point, final states treated as independent draws, Bonferroni z-tests on mean and
covariance (family-wise false-alarm 1e-4 per example), with a negative control.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import energyflow as ef
from energyflow.field import FieldError

NUM_CHAINS = 3000


def _target(d: int, seed: int, helpers):
    g = torch.Generator().manual_seed(seed)
    cov = helpers.random_spd(d, g)  # eigenvalues in [0.5, 2]
    mean = 4.0 * torch.rand(d, generator=g, dtype=torch.float64) - 2.0
    return mean, cov, g


def _hmc_for(cov: torch.Tensor, temperature: float = 1.0, num_leapfrog: int = 5) -> ef.HMC:
    # Leapfrog is stable for h < 2 sqrt(lambda_min); h = 0.5 sqrt(lambda_min) keeps the
    # energy error small. The trajectory length 2.5 sqrt(lambda_min) turns every
    # direction by an angle in [1.25, 2.5] rad (well away from 2 pi, where HMC would
    # not move), so 40 iterations forget the start completely.
    lam_min = float(torch.linalg.eigvalsh(cov).min())
    return ef.HMC(step_size=0.5 * math.sqrt(lam_min), num_leapfrog=num_leapfrog, num_steps=40, temperature=temperature)


@settings(max_examples=6)
@given(d=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_hmc_recovers_random_gaussian(d, seed, helpers):
    mean, cov, g = _target(d, seed, helpers)
    field = ef.compile(ef.GaussianPotential(mean, cov))
    out = _hmc_for(cov).run(field, torch.zeros(NUM_CHAINS, d, dtype=torch.float64), generator=g)
    ok, zmax, crit = helpers.gaussian_moments_agree(out.samples, mean, cov)
    assert ok, f"max |z| = {zmax:.2f} >= {crit:.2f} (d={d})"
    assert out.mean_acceptance > 0.8  # h sqrt(lambda)^-1 <= 0.5: leapfrog energy error is small
    assert out.num_divergences == 0


@settings(max_examples=3)
@given(d=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_hmc_moment_check_rejects_wrong_temperature(d, seed, helpers):
    """Negative control: at T = 2 the target is N(mean, 2 cov); checked against cov it must fail."""
    mean, cov, g = _target(d, seed, helpers)
    field = ef.compile(ef.GaussianPotential(mean, cov))
    # Larger temperature: the same step is still stable (the Hessian of U/T is smaller).
    out = _hmc_for(cov, temperature=2.0).run(field, torch.zeros(NUM_CHAINS, d, dtype=torch.float64), generator=g)
    assert not helpers.gaussian_moments_agree(out.samples, mean, cov)[0]
    assert helpers.gaussian_moments_agree(out.samples, mean, 2 * cov)[0]


def test_hmc_with_inverse_mass(helpers):
    """A diagonal mass matched to a badly scaled target; exactness must not depend on M."""
    scales = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    cov = torch.diag(scales**2)
    mean = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    field = ef.compile(ef.GaussianPotential(mean, cov))
    g = torch.Generator().manual_seed(11)
    out = ef.HMC(step_size=0.4, num_leapfrog=4, num_steps=40, inverse_mass=scales**2).run(
        field, torch.zeros(NUM_CHAINS, 3, dtype=torch.float64), generator=g
    )
    ok, zmax, crit = helpers.gaussian_moments_agree(out.samples, mean, cov)
    assert ok, f"max |z| = {zmax:.2f} >= {crit:.2f}"


def test_hmc_counts_divergences_and_rejects_them():
    """A step far beyond the leapfrog stability limit: every move is divergent or rejected."""
    field = ef.compile(ef.GaussianPotential(torch.zeros(2, dtype=torch.float64), 1e-4 * torch.eye(2, dtype=torch.float64)))
    x0 = torch.full((32, 2), 0.01, dtype=torch.float64)
    out = ef.HMC(step_size=1.0, num_leapfrog=20, num_steps=3, max_energy_error=100.0).run(
        field, x0, generator=torch.Generator().manual_seed(0)
    )
    assert out.num_divergences == 32 * 3
    assert torch.equal(out.samples, x0)  # nothing accepted, chains stay finite
    assert float(out.acceptance_rate.max()) == 0.0


def test_hmc_result_fields_and_reproducibility():
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    sampler = ef.HMC(step_size=0.3, num_leapfrog=3, num_steps=5)
    a = sampler.run(field, torch.zeros(8, 2), generator=torch.Generator().manual_seed(2), record_every=1)
    b = sampler.run(field, torch.zeros(8, 2), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.samples, b.samples)
    assert a.trajectory.shape == (6, 8, 2)
    # One evaluation at the start, then the largest per-chain (jittered) count of every iteration.
    assert a.num_grad_evals == 1 + a.info["num_integration_steps"]
    assert 5 * 2 <= a.info["num_integration_steps"] <= 5 * 4
    assert torch.allclose(a.energy, field.energy(a.samples), atol=1e-5)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"step_size": 0.0}, "step_size"),
    ({"step_size": -1.0}, "step_size"),
    ({"num_leapfrog": 0}, "num_leapfrog"),
    ({"num_steps": 0}, "num_steps"),
    ({"temperature": 0.0}, "temperature"),
])
def test_hmc_rejects_bad_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ef.HMC(**kwargs)


def test_hmc_rejects_non_positive_mass():
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    with pytest.raises(ValueError, match="inverse_mass"):
        ef.HMC(inverse_mass=torch.tensor([1.0, 0.0])).run(field, torch.zeros(2, 2))


@pytest.mark.parametrize("term", [ef.Repulsion(sigma=1.0), ef.RBFInteraction(bandwidth=1.0)])
def test_hmc_refuses_interaction_terms(term):
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)) + 0.5 * term)
    with pytest.raises(FieldError, match=type(term).__name__):
        ef.HMC().run(field, torch.zeros(4, 2))


@pytest.mark.slow
@settings(max_examples=60, derandomize=False)
@given(d=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_hmc_recovers_random_gaussian_thorough(d, seed, helpers):
    """Many more random targets (randomized), so a stricter family-wise alpha of 1e-5
    per example keeps the chance of a false alarm over all 60 under 0.1 %."""
    mean, cov, g = _target(d, seed, helpers)
    field = ef.compile(ef.GaussianPotential(mean, cov))
    out = _hmc_for(cov).run(field, torch.zeros(NUM_CHAINS, d, dtype=torch.float64), generator=g)
    ok, zmax, crit = helpers.gaussian_moments_agree(out.samples, mean, cov, family_alpha=1e-5)
    assert ok, f"max |z| = {zmax:.2f} >= {crit:.2f} (d={d})"


class _FailsFarOut(ef.Energy):
    """A standard Gaussian whose evaluation raises, as Pyro's argument validation does on
    NaN, whenever a state in the batch leaves the box |x| < 3."""

    def forward(self, x):
        if bool((x.abs() > 3).any()):
            raise ValueError("Expected parameter loc to satisfy the constraint Real()")
        return 0.5 * (x**2).sum(-1)


@pytest.mark.parametrize("sampler", ["hmc", "mala"])
def test_a_proposal_whose_energy_raises_is_rejected_and_the_chains_go_on(sampler):
    field = ef.compile(_FailsFarOut())
    kernel = (ef.HMC(step_size=0.9, num_leapfrog=4, num_steps=60) if sampler == "hmc"
              else ef.MALA(step_size=1.2, num_steps=60))
    out = kernel.run(field, torch.zeros(512, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert out.num_divergences > 0  # some proposals left the box and raised
    assert bool((out.samples.abs() <= 3).all()) and torch.isfinite(out.samples).all()
    # The chains still sample the Gaussian restricted to the box (variance 0.97 per coordinate
    # for the truncated N(0, 1); se of the pooled estimate ~0.04 at 512 x 2 draws).
    assert abs(float(out.samples.var()) - 0.97) < 0.2


def test_an_energy_that_always_raises_is_not_hidden():
    class Broken(ef.Energy):
        calls = 0

        def forward(self, x):
            Broken.calls += 1
            if Broken.calls > 2:  # fine on the first-use check and the initial states, then always raises
                raise RuntimeError("a real bug")
            return x.sum(-1)

    field = ef.compile(Broken())
    with pytest.raises(RuntimeError, match="a real bug"):
        ef.MALA(step_size=0.1, num_steps=2).run(field, torch.zeros(7, 2), generator=torch.Generator().manual_seed(0))
