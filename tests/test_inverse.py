"""Inverse problems: tasks, the posterior they build, and its analytic answer on a Gaussian prior."""

from __future__ import annotations

import pytest
import torch

import energyflow as ef
from energyflow.inverse import (
    InverseSolution,
    baseline_psnr,
    evaluate,
    make_task,
    nearest_neighbour_baseline,
    solve,
)

SHAPE = (1, 4, 4)


@pytest.mark.parametrize("name, observed", [("inpaint_box", 12), ("inpaint_half", 8), ("denoise", 16), ("deblur", 16)])
def test_tasks_observe_the_documented_pixels(name, observed):
    task = make_task(name, SHAPE)
    assert int(task.observed.sum()) == observed
    y = task.measure(torch.zeros(3, *SHAPE), generator=torch.Generator().manual_seed(0))
    assert y.shape == (3, *SHAPE)
    # Unobserved pixels carry no measurement at all (not even noise).
    assert torch.all(y[:, task.observed == 0] == 0)


def test_random_mask_fraction_and_determinism():
    a = make_task("inpaint_random", (1, 8, 8), missing_fraction=0.5, mask_seed=1)
    b = make_task("inpaint_random", (1, 8, 8), missing_fraction=0.5, mask_seed=1)
    assert torch.equal(a.observed, b.observed)
    # 64 Bernoulli(0.5) pixels: the missing count is within 4 sd (sd = 4) of 32.
    assert 16 <= int((1 - a.observed).sum()) <= 48


def test_blur_operator_preserves_constant_interior():
    task = make_task("deblur", (1, 5, 5))
    out = task.forward(torch.ones(1, 1, 5, 5))
    # A normalised kernel maps a constant image to itself away from the zero-padded border.
    torch.testing.assert_close(out[0, 0, 1:-1, 1:-1], torch.ones(3, 3))


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        make_task("colorize", SHAPE)
    with pytest.raises(ValueError, match="images"):
        make_task("denoise", (16,))
    with pytest.raises(ValueError, match="noise"):
        make_task("denoise", SHAPE, noise=0.0)


def _analytic_posterior(task, y, prior_var):
    # Prior N(0, prior_var I) on the flattened image; y = A x + noise on observed pixels.
    d = task.observed.numel()
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *SHAPE)
    A = task.forward(basis).reshape(d, d).T  # column j = A e_j
    keep = task.observed.flatten().bool()
    A = A[keep]
    prec = torch.eye(d, dtype=torch.float64) / prior_var + A.T @ A / task.noise**2
    cov = torch.linalg.inv(prec)
    mean = cov @ (A.T @ y.flatten()[keep] / task.noise**2)
    return mean.reshape(SHAPE), cov


@pytest.mark.parametrize("guidance", [True, False])
@pytest.mark.parametrize("name", ["inpaint_half", "deblur"])
def test_solve_recovers_linear_gaussian_posterior(name, guidance):
    # With a Gaussian prior potential and a constant temperature 1 the posterior is Gaussian
    # with a closed form. 1000 chains of Heun Langevin at dt=0.02 for t=5 (relaxation time of
    # the slowest mode = prior variance 1, and chains start from the prior): the discretisation
    # bias is O(dt^2) ~ 4e-4 (stiffest mode: precision 12, dt * 12 = 0.24), and the Monte Carlo
    # standard error of a mean is <= sqrt(1/1000) = 0.032, so 0.16 is a 5-sigma bound. Guided
    # transport (t < 1) changes only the path: from t = 1 the chain targets the same posterior.
    torch.manual_seed(0)
    task = make_task(name, SHAPE, noise=0.3)
    truth = torch.randn(1, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = task.measure(truth, generator=torch.Generator().manual_seed(2))
    prior = ef.GaussianPotential(torch.zeros(16, dtype=torch.float64), torch.eye(16, dtype=torch.float64))
    sampler = ef.Langevin(step_size=0.02, t_end=5.0, schedule=1.0, method="heun")
    sol = solve(prior, task, y, sampler, chains=1000, generator=torch.Generator().manual_seed(3), clamp=None,
                guidance=guidance)
    mean, cov = _analytic_posterior(task, y, 1.0)
    assert sol.samples.shape == (1, 1000, *SHAPE)
    assert (sol.mean[0] - mean).abs().max() < 0.16
    # Variances: se of a variance estimate is var * sqrt(2 / 1000) <= 0.045; allow 0.2 (4.5 se).
    var = sol.samples[0].reshape(1000, -1).var(0)
    assert (var - torch.diagonal(cov)).abs().max() < 0.2


def test_repulsion_raises_diversity_only_on_missing_pixels():
    # Same prior, same seed, with and without repulsion among the chains of each image.
    task = make_task("inpaint_half", SHAPE, noise=0.1)
    y = task.measure(torch.zeros(2, *SHAPE, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    prior = ef.GaussianPotential(torch.zeros(16, dtype=torch.float64), 0.25 * torch.eye(16, dtype=torch.float64))
    sampler = ef.Langevin(step_size=0.01, t_end=3.0, schedule=0.5)
    plain = solve(prior, task, y, sampler, chains=8, generator=torch.Generator().manual_seed(1), clamp=None)
    spread = solve(prior, task, y, sampler, chains=8, repulsion_sigma=2.0, generator=torch.Generator().manual_seed(1), clamp=None)
    truth = torch.zeros(2, *SHAPE, dtype=torch.float64)
    assert evaluate(spread, truth, task)["diversity"] > 1.2 * evaluate(plain, truth, task)["diversity"]
    # The observed half is pinned by the likelihood in both runs: repulsion acts on the missing pixels only.
    observed = task.observed.bool()
    gap_plain = (plain.samples[..., observed] - y[:, None][..., observed]).abs().mean()
    gap_spread = (spread.samples[..., observed] - y[:, None][..., observed]).abs().mean()
    assert gap_spread < gap_plain + 0.05


def test_solve_checks_its_arguments():
    task = make_task("denoise", SHAPE)
    prior = ef.GaussianPotential(torch.zeros(16), torch.eye(16))
    sampler = ef.Langevin(step_size=0.01, num_steps=2)
    with pytest.raises(ValueError, match="chains"):
        solve(prior, task, torch.zeros(1, *SHAPE), sampler, chains=0)
    with pytest.raises(ValueError, match="two chains"):
        solve(prior, task, torch.zeros(1, *SHAPE), sampler, chains=1, repulsion_sigma=1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        solve(prior, task, torch.zeros(16), sampler)
    with pytest.raises(ValueError, match="guidance_weight"):
        solve(prior, task, torch.zeros(1, *SHAPE), sampler, guidance=False, guidance_weight=0.1)


def test_nearest_neighbour_baseline_finds_the_matching_training_image():
    task = make_task("inpaint_half", SHAPE)
    train = torch.randn(20, *SHAPE, generator=torch.Generator().manual_seed(0))
    y = task.forward(train[[7, 3]])
    assert torch.equal(nearest_neighbour_baseline(task, y, train), train[[7, 3]])
    assert baseline_psnr(train[[7, 3]].clamp(-1, 1), train[[7, 3]].clamp(-1, 1), task) > 100


def test_evaluate_reports_perfect_scores_for_the_truth():
    task = make_task("inpaint_box", SHAPE)
    truth = torch.rand(2, *SHAPE) * 2 - 1
    sol = InverseSolution(truth[:, None].repeat(1, 3, 1, 1, 1), task.forward(truth), result=None)
    out = evaluate(sol, truth, task)
    assert out["psnr"] > 100 and out["ssim"] == pytest.approx(1.0) and out["diversity"] == 0.0
