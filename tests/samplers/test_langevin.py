"""Langevin (Euler-Maruyama and Heun): discretisation bias against the analytic
stationary variance, schedules, constrained spaces, divergence errors, validation."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

import energyflow as ef
from energyflow.samplers.base import DivergenceError

NUM_CHAINS = 20000
F64 = torch.float64


def _ula_variance(s2: float, h: float) -> float:
    """Stationary variance of x' = x - h x / s2 + sqrt(2h) xi (Euler, target N(0, s2))."""
    return s2 / (1.0 - h / (2.0 * s2))


def _heun_variance(s2: float, h: float) -> float:
    """Same for the predictor-corrector: x' = a x + sqrt(2h) (1 - h c / 2) xi, c = 1/s2,
    a = 1 - h c + (h c)^2 / 2; variance 2h (1 - hc/2)^2 / (1 - a^2)."""
    c = 1.0 / s2
    a = 1.0 - h * c + 0.5 * (h * c) ** 2
    return 2.0 * h * (1.0 - 0.5 * h * c) ** 2 / (1.0 - a * a)


def _final_variance(s2: float, h: float, method: str, seed: int) -> float:
    field = ef.compile(ef.GaussianPotential(torch.zeros(1, dtype=F64), torch.full((1, 1), s2, dtype=F64)))
    # The variance relaxes by (1 - h / s2)^2 per step from 0; 8 / h steps leave e^-16.
    steps = int(math.ceil(8.0 * s2 / h))
    out = ef.Langevin(step_size=h, num_steps=steps, schedule=1.0, method=method).run(
        field, torch.zeros(NUM_CHAINS, 1, dtype=F64), generator=torch.Generator().manual_seed(seed)
    )
    return float(out.samples.var())


def _z_var(sample_var: float, true_var: float) -> float:
    # The sample variance of n Gaussian draws has standard error true_var * sqrt(2 / (n - 1)).
    return (sample_var - true_var) / (true_var * math.sqrt(2.0 / (NUM_CHAINS - 1)))


# Four z-tests per test function below; family-wise false alarm 1e-4.
Z_CRIT = float(norm.isf(1e-4 / (2 * 4)))


def test_euler_bias_matches_analytic_and_shrinks_with_dt():
    s2 = 1.0
    var_coarse = _final_variance(s2, 0.2, "euler", seed=0)
    var_fine = _final_variance(s2, 0.05, "euler", seed=1)
    # Both agree with the exact ULA stationary variance s2 / (1 - h / (2 s2)) ...
    assert abs(_z_var(var_coarse, _ula_variance(s2, 0.2))) < Z_CRIT
    assert abs(_z_var(var_fine, _ula_variance(s2, 0.05))) < Z_CRIT
    # ... the coarse chain is measurably biased (negative control: 1.11 vs 1, z ~ 16) ...
    assert abs(_z_var(var_coarse, s2)) > Z_CRIT
    # ... and the bias shrinks with dt: the analytic errors are 0.111 and 0.026, the
    # Monte Carlo error of each is ~0.01, so the ordering holds with a wide margin.
    assert abs(var_fine - s2) < 0.5 * abs(var_coarse - s2)


def test_heun_matches_its_analytic_variance_and_beats_euler():
    s2, h = 1.0, 0.2
    var_heun = _final_variance(s2, h, "heun", seed=2)
    assert abs(_z_var(var_heun, _heun_variance(s2, h))) < Z_CRIT
    # Heun's bias at h = 0.2 is -0.011, Euler's +0.111.
    assert abs(_heun_variance(s2, h) - s2) < 0.2 * abs(_ula_variance(s2, h) - s2)
    assert abs(var_heun - s2) < abs(_ula_variance(s2, h) - s2) - 4 * math.sqrt(2.0 / NUM_CHAINS)


def test_zero_temperature_is_the_euler_gradient_flow():
    field = ef.compile(ef.DoubleWell(barrier=1.5) + ef.Prior(torch.distributions.Normal(0.0, 2.0)))
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    lang = ef.Langevin(step_size=0.01, num_steps=50, schedule=0.0).run(field, x0, generator=torch.Generator())
    flow = ef.GradientFlow(step_size=0.01, num_steps=50, temperature=0.0).run(field, x0)
    assert torch.allclose(lang.samples, flow.samples, atol=1e-6)


def test_energy_matching_schedule_is_deterministic_before_tau_star():
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    x0 = torch.ones(8, 2)
    sched = ef.EnergyMatchingSchedule(tau_star=0.8, eps_max=0.5)
    sampler = ef.Langevin(step_size=0.1, t_end=0.7, schedule=sched)
    a = sampler.run(field, x0, generator=torch.Generator().manual_seed(0))
    b = sampler.run(field, x0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.samples, b.samples)  # eps = 0 throughout: no noise
    assert torch.allclose(a.samples, x0 * (1 - 0.1) ** 7)  # Euler on grad = x
    # Past tau_star the noise is on and the recorded temperatures follow eps(t).
    long = ef.Langevin(step_size=0.1, t_end=1.5, schedule=sched)
    assert long.steps == 15
    assert long.temperatures() == pytest.approx([sched(0.1 * k) for k in range(15)])
    c = long.run(field, x0, generator=torch.Generator().manual_seed(0))
    d = long.run(field, x0, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(c.samples, d.samples)
    assert c.info["t_end"] == pytest.approx(1.5)


def test_reproducible_with_generator_and_result_fields():
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)) + ef.Repulsion(sigma=3.0))
    sampler = ef.Langevin(step_size=0.05, num_steps=10, method="heun")
    a = sampler.run(field, torch.zeros(6, 2), generator=torch.Generator().manual_seed(9), record_every=5)
    b = sampler.run(field, torch.zeros(6, 2), generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.samples, b.samples)
    assert a.trajectory.shape == (3, 6, 2)
    assert a.energy_trace.shape == (10,) and a.grad_norm_trace.shape == (10,)
    assert a.num_grad_evals == 2 * 10  # Heun: two gradients a step
    assert a.acceptance_rate is None and a.mean_acceptance is None


def test_symmetric_masked_space_keeps_samples_on_constraints():
    n = 5
    mask = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    space = ef.SymmetricMasked(num_nodes=n, mask=mask)
    # The potential pulls every entry (diagonal and masked ones included) towards 1.
    V = ef.GaussianPotential(torch.ones(n * n), torch.eye(n * n))
    field = ef.compile(V, space=space)
    x0 = torch.randn(32, n, n, generator=torch.Generator().manual_seed(0))  # off the constraints
    out = ef.Langevin(step_size=0.05, num_steps=40).run(field, x0, generator=torch.Generator().manual_seed(1))
    a = out.samples
    assert torch.equal(a, a.transpose(-1, -2))
    assert torch.count_nonzero(torch.diagonal(a, dim1=-2, dim2=-1)) == 0
    assert torch.count_nonzero(a[:, 4, :]) == 0 and torch.count_nonzero(a[:, :, 4]) == 0
    # Free entries did move towards the mean 1 (the constraint is not "everything zero").
    free = a[:, :4, :4][:, ~torch.eye(4, dtype=torch.bool)]
    assert 0.5 < float(free.mean()) < 1.5


def test_zero_center_of_mass_space_keeps_the_centre_at_zero():
    space = ef.ZeroCenterOfMass(num_points=6, dim=3)
    V = ef.GaussianPotential(torch.full((18,), 2.0, dtype=F64), torch.eye(18, dtype=F64))  # pulls the centre to 2
    field = ef.compile(V, space=space)
    x0 = torch.randn(16, 6, 3, generator=torch.Generator().manual_seed(0), dtype=F64) + 5.0
    out = ef.Langevin(step_size=0.05, num_steps=30).run(field, x0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.samples.mean(dim=1), torch.zeros(16, 3, dtype=F64), atol=1e-12)
    assert float(out.samples.std()) > 0.3  # but the points themselves are spread out


def test_divergence_on_stiff_quadratic_names_step_and_term():
    # Curvature 1e4 with dt = 0.1: each step multiplies x by about -999, so the energy
    # overflows after a few dozen steps.
    stiff = ef.GaussianPotential(torch.zeros(2, dtype=F64), 1e-4 * torch.eye(2, dtype=F64)).named("stiff_well")
    field = ef.compile(stiff)
    with pytest.raises(DivergenceError) as info:
        ef.Langevin(step_size=0.1, num_steps=500, schedule=0.0).run(field, torch.ones(4, 2, dtype=F64))
    err = info.value
    assert 0 < err.step < 500
    assert f"step {err.step}" in str(err)
    assert "stiff_well" in str(err) and err.terms == ["stiff_well"]
    assert "step_size" in str(err)
    assert err.last_finite is not None and torch.isfinite(err.last_finite).all()


class _SqrtWall(ef.Energy):
    """V = sum(x + sqrt(x)): finite for x >= 0, its drift pushes x below 0 where it is NaN."""

    def forward(self, x):
        return (x + torch.sqrt(x)).sum(-1)


def test_nan_producing_term_is_named():
    field = ef.compile(ef.GaussianPotential(torch.zeros(1), torch.eye(1)) + _SqrtWall().named("sqrt_wall").fixed())
    with pytest.raises(DivergenceError, match="sqrt_wall") as info:
        ef.Langevin(step_size=0.1, num_steps=100, schedule=0.0).run(field, torch.full((3, 1), 1.0))
    assert info.value.terms == ["sqrt_wall"]  # the Gaussian stays finite and is not blamed


@pytest.mark.parametrize("bad", [0.0, -0.01, math.nan])
def test_rejects_non_positive_step_size(bad):
    with pytest.raises(ValueError, match="step_size"):
        ef.Langevin(step_size=bad)


def test_rejects_bad_horizon_and_method():
    with pytest.raises(ValueError, match="num_steps and t_end"):
        ef.Langevin(num_steps=10, t_end=1.0)
    with pytest.raises(ValueError, match="t_end"):
        ef.Langevin(t_end=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        ef.Langevin(num_steps=0)
    with pytest.raises(ValueError, match="method"):
        ef.Langevin(method="rk4")
    with pytest.raises(TypeError, match="schedule"):
        ef.Langevin(schedule="hot")


def test_sampler_reports_bad_network_shape_as_field_error():
    from torch import nn

    class TwoOutputs(nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :1], x[:, :1]], dim=1)  # (B, 2): forgot to reduce

    field = ef.compile(ef.Potential(TwoOutputs()).named("two_outputs"))
    with pytest.raises(ef.FieldError, match=r"two_outputs.*\(4, 2\)"):
        ef.Langevin(num_steps=3).run(field, torch.zeros(4, 2))


def test_lean_run_gives_the_same_chain_without_traces():
    # trace=False and sparse finiteness checks change bookkeeping only, never the chain.
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    sampler = ef.Langevin(step_size=0.05, num_steps=30, schedule=0.5)
    full = sampler.run(field, torch.zeros(64, 2), generator=torch.Generator().manual_seed(4))
    lean = sampler.run(field, torch.zeros(64, 2), generator=torch.Generator().manual_seed(4), trace=False,
                       check_every=30)
    assert torch.equal(full.samples, lean.samples)
    assert full.energy_trace.shape == (30,) and lean.energy_trace.shape == (0,)


def test_sparse_checks_still_stop_a_divergent_chain_and_say_where():
    # A stiff quadratic (curvature 1e4) with dt = 0.01 multiplies x by -99 a step and
    # overflows float32 within 20 steps; checked at steps 0, 50, ... the error names the window.
    field = ef.compile(ef.GaussianPotential(torch.zeros(1), torch.full((1, 1), 1e-4)).named("stiff"))
    sampler = ef.Langevin(step_size=0.01, num_steps=200, schedule=0.0)
    with pytest.raises(ef.DivergenceError, match="between steps 1 and 50"):
        sampler.run(field, torch.ones(4, 1), check_every=50)
    with pytest.raises(ValueError, match="check_every"):
        sampler.run(field, torch.ones(4, 1), check_every=0)


def test_integer_fields_refuse_fractions_and_generators_must_be_generators():
    from energyflow.errors import EnergyflowError

    with pytest.raises(EnergyflowError, match=r"Langevin.num_steps must be an integer, got 2.5"):
        ef.Langevin(num_steps=2.5)
    with pytest.raises(EnergyflowError, match="MALA.num_steps"):
        ef.MALA(num_steps=True)
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    with pytest.raises(TypeError, match=r"torch.Generator\(\).manual_seed\(0\)"):
        ef.Langevin(num_steps=3).run(field, torch.zeros(4, 2), generator=0)
    with pytest.raises(ef.FieldError, match="empty batch"):
        ef.Langevin(num_steps=3).run(field, torch.zeros(0, 2))
