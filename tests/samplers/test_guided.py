"""GuidedLangevin: the observation steers the transport through the predicted endpoint,
leaves the stationary posterior unchanged, and reduces to Langevin at weight 0."""

from __future__ import annotations

import pytest
import torch

import energyflow as ef
from energyflow.samplers.base import DivergenceError
from energyflow.samplers.guided import GuidedLangevin

F64 = torch.float64
A = torch.tensor([[1.0, 0.0]], dtype=F64)  # observe the first coordinate only
Y = torch.tensor([[2.0]], dtype=F64)


def _prior(rho: float, scale: float = 1.0) -> tuple[ef.Energy, torch.Tensor]:
    cov = scale * torch.tensor([[1.0, rho], [rho, 1.0]], dtype=F64)
    return ef.GaussianPotential(torch.zeros(2, dtype=F64), cov), cov


def _x0(n: int = 2000, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_zero_weight_is_plain_langevin(method):
    prior, _ = _prior(0.5)
    base = ef.Langevin(step_size=0.05, t_end=2.0, schedule=ef.EnergyMatchingSchedule(0.8, 0.3), method=method)
    obs = ef.observe(Y, forward=A, noise=0.5)
    guided = GuidedLangevin(base, obs, weight=0.0).run(ef.compile(prior), _x0(), generator=torch.Generator().manual_seed(1))
    plain = base.run(ef.compile(prior), _x0(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(guided.samples, plain.samples)
    assert guided.num_grad_evals == plain.num_grad_evals


def test_guidance_steers_the_unobserved_coordinate_during_transport():
    # Correlated prior (rho = 0.8, variance 4), y = x[0] + N(0, 0.5^2) = 2: the posterior mean of
    # x[1] is rho * 4 / 4.25 * 2 = 1.51. Before tau* = 1 the tempered observation has weight 0,
    # so plain transport leaves x[1] at its prior mean 0 (Monte Carlo se of the mean of 2000
    # chains < 0.025, so 0.1 is a 4-se bound). Guided transport must move it most of the way
    # (> 1.0) through the correlation that grad V carries into the endpoint prediction.
    prior, _ = _prior(0.8, scale=4.0)
    obs = ef.observe(Y, forward=A, noise=0.5)
    base = ef.Langevin(step_size=0.02, t_end=1.0, schedule=ef.EnergyMatchingSchedule(1.0, 1.0), method="euler")
    guided = GuidedLangevin(base, obs).run(ef.compile(prior), _x0(), generator=torch.Generator().manual_seed(1))
    plain = base.run(ef.compile(prior + obs), _x0(), generator=torch.Generator().manual_seed(1))
    assert abs(float(plain.samples[:, 1].mean())) < 0.1
    assert float(guided.samples[:, 1].mean()) > 1.0
    assert float(guided.samples[:, 0].mean()) > 1.5  # and the observed coordinate towards y


@pytest.mark.parametrize("weight", [None, 0.6])
def test_stationary_density_is_the_tempered_posterior(weight):
    # After t = 1 the chain is Langevin on (V + w L) at eps_max = 0.3: a Gaussian with precision
    # (P + w A^T A / s^2) / eps and mean solving (P + w A^T A / s^2) m = w A^T y / s^2. The
    # default w = eps_max gives the posterior exp(-V/eps) p(y|x). Relaxation: the slowest
    # drift rate is the smallest prior precision eigenvalue 2/3, so 9 time units leave e^-12.
    # 4000 Heun chains at dt=0.02: Monte Carlo se of a mean <= sqrt(0.3 * 1.5 / 4000) = 0.011
    # and of a variance <= 0.45 * sqrt(2/4000) = 0.01; 0.05 is a 4.5-se bound (dt^2 bias ~1e-4).
    eps, noise = 0.3, 0.5
    prior, cov = _prior(0.5)
    obs = ef.observe(Y, forward=A, noise=noise)
    base = ef.Langevin(step_size=0.02, t_end=10.0, schedule=ef.EnergyMatchingSchedule(1.0, eps), method="heun")
    sampler = GuidedLangevin(base, obs, weight=weight)
    w = sampler.resolved_weight()
    assert w == (eps if weight is None else weight)
    out = sampler.run(ef.compile(prior), _x0(4000), generator=torch.Generator().manual_seed(2))
    hess = torch.linalg.inv(cov) + w * A.T @ A / noise**2
    mean = torch.linalg.solve(hess, w * A.T @ Y[0] / noise**2)
    post_cov = eps * torch.linalg.inv(hess)
    assert (out.samples.mean(0) - mean).abs().max() < 0.05
    assert (torch.cov(out.samples.T) - post_cov).abs().max() < 0.05
    assert out.info["weight"] == w


def test_cost_accounting_counts_the_vector_jacobian_product():
    # Each transport step (t < 1) costs a gradient of V and a product through it; after t = 1
    # a step costs one gradient of the field.
    prior, _ = _prior(0.5)
    obs = ef.observe(Y, forward=A, noise=0.5)
    base = ef.Langevin(step_size=0.1, t_end=2.0, schedule=ef.EnergyMatchingSchedule(1.0, 0.5), method="euler")
    out = GuidedLangevin(base, obs).run(ef.compile(prior), _x0(10), generator=torch.Generator().manual_seed(0))
    assert out.num_grad_evals == 2 * 10 + 10
    assert out.energy_trace.shape == (20,) and torch.isfinite(out.energy_trace).all()


def test_bad_arguments_are_refused():
    prior, _ = _prior(0.5)
    obs = ef.observe(Y, forward=A, noise=0.5)
    base = ef.Langevin(step_size=0.1, num_steps=3)
    with pytest.raises(TypeError, match="base"):
        GuidedLangevin(ef.MALA(step_size=0.1), obs)
    with pytest.raises(TypeError, match="observation"):
        GuidedLangevin(base, lambda x: x.sum(-1))
    with pytest.raises(ValueError, match="weight"):
        GuidedLangevin(base, obs, weight=-1.0)
    wrong = ef.observe(torch.zeros(1, 1, dtype=F64), forward=torch.ones(1, 3, dtype=F64), noise=0.5)
    with pytest.raises(Exception, match="shape|size"):
        GuidedLangevin(base, wrong).run(ef.compile(prior), _x0(4))


def test_a_nan_observation_stops_the_chain_and_is_named():
    # An observation that is NaN for x[0] > 3 (a user's model bug): the chain is pulled
    # there by y = 5 and must stop with a DivergenceError naming the observation term.
    class Bad(ef.Energy):
        coupling = "tempered"

        def forward(self, x):
            return torch.where(x[:, 0] > 3.0, torch.full_like(x[:, 0], float("nan")), 0.5 * (x[:, 0] - 5.0) ** 2)

    prior, _ = _prior(0.5)
    base = ef.Langevin(step_size=0.05, t_end=4.0, schedule=ef.EnergyMatchingSchedule(1.0, 1.0))
    with pytest.raises(DivergenceError, match="Bad"):
        GuidedLangevin(base, Bad()).run(ef.compile(prior), _x0(16), generator=torch.Generator().manual_seed(0))
