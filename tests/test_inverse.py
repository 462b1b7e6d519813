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


# --- blind denoising: sigma's diagnostics per image (issue 15) -----------------------------------


def _blind_gaussian(seed: int = 2, **kwargs):
    """Blind denoising of two 1x4x4 measurements, true noise 0.3 and 1.0, under the Gaussian prior
    N(0, 0.1 I) at eps 0.1 (prior std 0.1): sigma's posteriors sit near 0.29 and 1.1."""
    from energyflow.inverse import blind_denoise
    from energyflow.schedule import EnergyMatchingSchedule

    V = ef.GaussianPotential(torch.zeros(16), 0.1 * torch.eye(16))
    g = torch.Generator().manual_seed(0)
    truth = 0.1 * torch.randn(2, *SHAPE, generator=g)
    y = truth + torch.tensor([0.3, 1.0]).reshape(-1, 1, 1, 1) * torch.randn(2, *SHAPE, generator=g)
    sampler = ef.Langevin(step_size=0.05, t_end=2.0, schedule=EnergyMatchingSchedule(1.0, 0.1), method="heun")
    settings = dict(chains=4, num_warmup=100, num_samples=100, guidance=False) | kwargs
    return blind_denoise(V, y, sampler, generator=torch.Generator().manual_seed(seed), **settings)


def test_blind_diagnostics_take_each_images_chains_as_the_chains():
    """Chains of different measurements sample different posteriors: R-hat and ESS of sigma are over
    the chains of one image. The kept draws are the refinement's (num_samples, not a trajectory);
    ArviZ's chain c of image i is the sampler's chain i * chains + c; the summary's R-hat equals
    diagnostics.rhat on those (chains, draws) arrays. Negative control: pooling the 8 chains of both
    images (what SampleResult.to_arviz would do here) reads the two posteriors (sigma ~0.29 and ~1.1)
    as unmixed chains, R-hat 1.76 against at most 1.09 per image on this seed."""
    from energyflow import diagnostics

    out = _blind_gaussian(thin=2)
    assert out.refinement.draws.shape == (8, 50, 17) and out.draws_per_chain == 50 and out.chains == 4
    idata = out.to_arviz()
    assert idata.posterior["sigma"].shape == (4, 50, 2) and idata.posterior["x"].shape == (4, 50, 2, *SHAPE)
    assert idata.sample_stats["diverging"].shape == (4, 50, 2) and idata.observed_data["y"].shape == (2, *SHAPE)
    sigma = out.refinement.draws[..., -1].exp()  # (8, 50): biject_to(positive) is exp
    per_image = sigma.reshape(2, 4, 50).permute(1, 2, 0).numpy()  # (chains, draws, image)
    torch.testing.assert_close(torch.as_tensor(idata.posterior["sigma"].values), torch.as_tensor(per_image))
    table = out.summary(warn=False, round_to="none")
    assert list(table.index) == ["sigma[0]", "sigma[1]"]
    assert table["r_hat"].tolist() == pytest.approx(diagnostics.rhat(per_image).tolist(), rel=1e-12)
    assert table["ess_tail"].tolist() == pytest.approx(diagnostics.ess(per_image, "tail").tolist(), rel=1e-12)
    assert float(table["r_hat"].max()) < 1.1
    pooled = diagnostics.rhat(sigma.unsqueeze(-1).numpy())  # all 8 chains as one posterior
    assert float(pooled[0]) > 1.3
    assert len(out.summary("x", warn=False)) == 2 * 16  # x: one row per pixel and image
    fig = out.plot_trace()
    assert [ax.get_title() for ax in fig.axes[:3]] == ["sigma[0] (density per chain)", "sigma[0] (trace)",
                                                     "sigma[0] (ranks)"]


def test_blind_diagnostics_need_sampled_sigma_and_kept_draws():
    known = _blind_gaussian(num_samples=10, known_sigma=1.0)
    assert list(known.to_arviz().posterior.data_vars) == ["x"]
    with pytest.raises(ValueError, match="sigma was known"):
        known.summary("sigma")
    with pytest.raises(ValueError, match="no variable"):
        known.to_arviz(["tau"])
    transport_only = _blind_gaussian(num_samples=0)
    with pytest.raises(ValueError, match="num_samples"):
        transport_only.to_arviz()


def test_warmup_restarts_do_not_move_chains_between_measurements():
    """With sigma known (0.3), the noisier image's chains sit > 25 nats above the batch's median
    potential. Before the refinement grouped its chains by image, warm-up took them for stranded, moved
    them onto the other image's states, where they never accepted, and dual averaging drove the shared
    step size to ~1e-28. Now chains are judged and restarted within their image only."""
    import warnings

    from energyflow.diagnostics import EnergyflowWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EnergyflowWarning)
        out = _blind_gaussian(num_samples=20, known_sigma=0.3)
    info = out.refinement.info
    assert info["num_restarted"] == 0 and info["num_restarted_per_group"] == {0: 0, 1: 0}
    assert bool((out.refinement.acceptance_rate > 0.1).all()) and out.refinement.info["step_size"] > 1e-3


def test_blind_runs_relabel_energyflow_warnings_and_pass_others_through():
    import warnings

    from energyflow.diagnostics import DivergenceWarning
    from energyflow.inverse import _relabelled

    def noisy():
        warnings.warn("3 transitions diverged", DivergenceWarning)
        warnings.warn("unrelated", RuntimeWarning)
        return 7

    log: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _relabelled("known-sigma posterior", log, noisy) == 7
    assert log == [{"category": "DivergenceWarning", "message": "known-sigma posterior: 3 transitions diverged"}]
    assert sorted((w.category.__name__, str(w.message)) for w in caught) == [
        ("DivergenceWarning", "known-sigma posterior: 3 transitions diverged"), ("RuntimeWarning", "unrelated")]
    assert all(w.filename == __file__ for w in caught if w.category is DivergenceWarning)  # the caller's line
    with warnings.catch_warnings():  # a caller's "error" filter still makes them fatal
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("error", DivergenceWarning)
        with pytest.raises(DivergenceWarning, match="known-sigma posterior"):
            _relabelled("known-sigma posterior", [], noisy)


@pytest.fixture(scope="module")
def tiny_digits_run(tmp_path_factory):
    """A 3-step digits run (tests/test_blind_denoising.py's CLI case): a prior that has not learnt
    anything, sampled with 2 chains x 5 draws per image, so R-hat and ESS must warn."""
    from cli_helpers import invoke

    out = tmp_path_factory.mktemp("blind_diagnostics") / "digits"
    result = invoke("train", "--preset", "mnist", "--out", out, "--steps", "3", "--batch-size", "8", "--device", "cpu",
                    "--set", "hidden=8", "--set", "depth=1", "--set", "num_langevin_steps=3", "--set", "phase1_steps=2",
                    "--set", "eval_every=1000", "--set", "eval_samples=16", "--set", "sample_t_end=1.05")
    assert result.exit_code == 0, result.output
    return out


BLIND_TINY = dict(num_images=2, chains=2, noise=0.2, t_end=1.05, num_warmup=5, num_samples=5, thin=1,
                  prior_temperature=0.5, refine="mala")


def test_blind_report_carries_sigmas_rhat_ess_warnings_and_trace_plot(tiny_digits_run, tmp_path):
    import json

    import warnings

    from energyflow.diagnostics import ConvergenceWarning, EnergyflowWarning
    from energyflow.inverse import blind_condition_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EnergyflowWarning)
        report = blind_condition_run(str(tiny_digits_run), str(tmp_path / "blind"), **BLIND_TINY)
    raised = [(w.category.__name__, str(w.message)) for w in caught if issubclass(w.category, EnergyflowWarning)]
    assert raised == [(w["category"], w["message"]) for w in report.warnings]  # raised and reported alike
    assert any(c is ConvergenceWarning and "sigma per image: bulk ESS below 400" in str(m)
               for c, m in ((w.category, w.message) for w in caught))
    table = report.sigma_summary
    assert list(table.index) == ["sigma[0]", "sigma[1]"]
    for i, row in enumerate(report.rows):
        assert row["sigma_rhat"] == table["r_hat"].iloc[i] and row["sigma_ess_bulk"] == table["ess_bulk"].iloc[i]
        assert row["sigma_ess_tail"] == table["ess_tail"].iloc[i]
        assert row["sigma_mean"] == pytest.approx(table["mean"].iloc[i], rel=1e-5)
        assert row["warmup_restarted"] == row["warmup_restarted_known"] == 0  # 5 warm-up steps: no check
    s = report.summary
    assert s["sigma_rhat_max"] == max(r["sigma_rhat"] for r in report.rows)
    assert s["sigma_ess_bulk_min"] == min(r["sigma_ess_bulk"] for r in report.rows) < 400
    assert s["diagnostics"] is None
    assert all(w["message"].split(":")[0] in ("blind denoising (sigma sampled)", "known-sigma posterior",
                                              "blind denoising, sigma per image") for w in report.warnings)
    saved = json.loads((tmp_path / "blind" / "denoise_blind_metrics.json").read_text())
    assert saved["summary"]["warnings"] == report.warnings and saved["summary"]["sigma_rhat_max"] == s["sigma_rhat_max"]
    assert [r["sigma_ess_bulk"] for r in saved["images"]] == [r["sigma_ess_bulk"] for r in report.rows]
    trace = tmp_path / "blind" / "denoise_blind_sigma_trace.png"
    assert trace in report.files and trace.stat().st_size > 0


def test_blind_report_without_enough_draws_says_why(tiny_digits_run, tmp_path):
    from energyflow.inverse import blind_condition_run

    report = blind_condition_run(str(tiny_digits_run), str(tmp_path / "few"), **(BLIND_TINY | dict(num_samples=3)))
    assert report.sigma_summary is None and report.rows[0]["sigma_rhat"] is None
    assert report.summary["sigma_ess_tail_min"] is None and "fewer than the 4" in report.summary["diagnostics"]
    assert not (tmp_path / "few" / "denoise_blind_sigma_trace.png").exists()


def test_cli_prints_sigmas_summary_and_each_energyflow_warning(tiny_digits_run, tmp_path):
    import json
    import warnings

    from cli_helpers import invoke

    from energyflow.diagnostics import EnergyflowWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("condition", tiny_digits_run, "--task", "denoise", "--unknown-noise", "--noise", "0.2",
                        "--n-images", "2", "--chains", "2", "--warmup", "5", "--samples", "5", "--thin", "1",
                        "--prior-temperature", "0.5", "--refine", "mala", "--t-end", "1.05", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "sigma per image (ArviZ summary over each image's 2 chains x 5 draws" in out
    assert all(col in out for col in ("ess_bulk", "ess_tail", "r_hat", "sigma[0]", "sigma[1]"))
    report = json.loads((tmp_path / "c" / "denoise_blind_metrics.json").read_text())
    lines = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert lines == [f"warning: {w['category']}: {w['message']}" for w in report["summary"]["warnings"]] and lines
    assert "denoise_blind_sigma_trace.png" in out
    assert not [w for w in caught if issubclass(w.category, EnergyflowWarning)]  # printed, not leaked
