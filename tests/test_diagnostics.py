"""MCMC diagnostics (issue 15): ArviZ's numbers, known answers, warnings, the InferenceData bridge.

* identical numbers: energyflow's rhat/ess/mcse/summary are ArviZ's on the same fixed draws
  (equality, not closeness: nothing is re-implemented);
* known answer: an AR(1) chain x_t = rho x_{t-1} + e_t has integrated autocorrelation time
  (1 + rho) / (1 - rho), so ESS = N (1 - rho) / (1 + rho). The estimator's sampling sd is
  measured from 40 independent replicates and the replicates' mean must lie within 4
  standard errors (sd / sqrt(40)) of the formula (a two-sided 4-sigma band: a false alarm
  about 6e-5 per rho); negative control: the iid answer N lies far outside that band;
* bimodal: chains started in two separated modes (MALA, which does not cross) give R-hat
  >> 1.01 and a ConvergenceWarning; a well-mixed Gaussian (HMC, 8 x 1000 draws, bulk ESS
  about 8000, R-hat within ~0.003 of 1) warns of nothing: the negative control;
* to_arviz: ``az.summary(result.to_arviz())`` equals ``result.summary()``, ``az.plot_trace``
  runs on it, and an ef.model's groups carry its site names and data.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

import energyflow as ef
from energyflow import diagnostics as D
from energyflow.errors import InvalidValueError
from pyro_models import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools_noncentred

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    az = pytest.importorskip("arviz")
pd = pytest.importorskip("pandas")


def _draws(seed: int = 0, shape=(4, 500, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).cumsum(1) * 0.05 + rng.normal(size=shape)  # autocorrelated, not iid
    return x


def _gaussian(d: int = 2, dtype=torch.float64):
    return ef.compile(ef.GaussianPotential(torch.zeros(d, dtype=dtype), torch.eye(d, dtype=dtype)))


# --------------------------------------------------------------------------- ArviZ's numbers
def test_statistics_are_arviz_numbers_on_fixed_draws():
    x = _draws()
    ds = az.convert_to_dataset(x)
    np.testing.assert_array_equal(D.rhat(x), az.rhat(ds)["x"].values)
    np.testing.assert_array_equal(D.ess(x), az.ess(ds, method="bulk")["x"].values)
    np.testing.assert_array_equal(D.ess(x, method="tail"), az.ess(ds, method="tail")["x"].values)
    np.testing.assert_array_equal(D.mcse(x), az.mcse(ds, method="mean")["x"].values)
    np.testing.assert_array_equal(D.mcse(x, method="sd"), az.mcse(ds, method="sd")["x"].values)
    scalar = x[..., 0]  # (chains, draws) -> a float; torch tensors are accepted as they are
    assert D.rhat(torch.as_tensor(scalar)) == az.rhat(scalar) and isinstance(D.ess(scalar), float)
    with pytest.raises(InvalidValueError, match="chains, draws"):
        D.rhat(np.zeros(10))


def test_summary_of_a_result_is_arvizs_summary_of_its_inference_data():
    out = ef.HMC(num_leapfrog=5, num_warmup=100, num_samples=100).run(
        _gaussian(3), torch.zeros(4, 3, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.EnergyflowWarning)
        table = out.summary()
        idata = out.to_arviz()
    pd.testing.assert_frame_equal(table, az.summary(idata))
    assert list(table.columns) == ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "mcse_sd", "ess_bulk",
                                   "ess_tail", "r_hat"]
    pd.testing.assert_frame_equal(D.summary(idata, warn=False, hdi_prob=0.9), az.summary(idata, hdi_prob=0.9))
    axes = az.plot_trace(idata)  # ArviZ's own plots work on it
    assert axes.shape == (1, 2)
    import matplotlib.pyplot as plt

    plt.close("all")


# --------------------------------------------------------------------------- known answers
def _ar1(rho: float, chains: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """AR(1) chains started in the stationary law N(0, 1 / (1 - rho^2))."""
    x = np.empty((chains, n))
    x[:, 0] = rng.normal(size=chains) / np.sqrt(1.0 - rho**2)
    e = rng.normal(size=(chains, n))
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


def test_summary_of_a_pyro_nuts_result_is_arvizs_summary_and_its_stats_are_shared_by_the_chains():
    # NUTS runs the B chains as one chain of the product target: every stat but lp is shared.
    out = ef.PyroNUTS(num_samples=40, warmup_steps=40, max_tree_depth=4).run(
        _gaussian(2), torch.zeros(3, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert out.draws.shape == (3, 40, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.EnergyflowWarning)  # 40 draws: ESS warnings are expected
        table = out.summary()
        idata = out.to_arviz()
    pd.testing.assert_frame_equal(table, az.summary(idata))
    assert len(table) == 2 and list(table.columns)[:2] == ["mean", "sd"]
    stats = idata.sample_stats
    assert {"diverging", "step_size", "n_steps", "tree_depth", "lp"} <= set(stats.data_vars)
    assert stats["step_size"].shape == (3, 40)
    np.testing.assert_array_equal(stats["step_size"].values[0], stats["step_size"].values[2])
    assert not np.array_equal(stats["lp"].values[0], stats["lp"].values[1])


@pytest.mark.parametrize("rho", [0.5, 0.9, -0.3])
def test_ess_of_an_ar1_chain_is_n_times_one_minus_rho_over_one_plus_rho(rho):
    chains, n, reps = 4, 2000, 40
    rng = np.random.default_rng(12345)
    estimates = np.array([D.ess(_ar1(rho, chains, n, rng)) for _ in range(reps)])
    expected = chains * n * (1 - rho) / (1 + rho)
    se = estimates.std(ddof=1) / np.sqrt(reps)
    assert abs(estimates.mean() - expected) < 4 * se, (estimates.mean(), expected, se)
    assert abs(estimates.mean() - chains * n) > 10 * se  # negative control: the iid answer is far off


def _bimodal():
    means = torch.tensor([[-4.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    return ef.compile(ef.GaussianMixture(means, 0.25))  # sd 0.5: the modes are 16 sd apart


def test_chains_in_separate_modes_give_a_large_rhat_and_the_warning_fires():
    x0 = torch.tensor([[-4.0, 0.0], [4.0, 0.0]], dtype=torch.float64).repeat(4, 1)  # 4 chains in each mode
    out = ef.MALA(num_warmup=200, num_samples=400).run(_bimodal(), x0, generator=torch.Generator().manual_seed(0))
    assert bool((out.draws[0::2, :, 0] < 0).all() and (out.draws[1::2, :, 0] > 0).all())  # no chain crossed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = out.summary()
    messages = [str(w.message) for w in caught if w.category is D.ConvergenceWarning]
    assert any(m.startswith("R-hat above 1.01 for 1 of 2 parameters, worst x[0]") for m in messages), messages
    # Rank normalisation bounds R-hat: two perfectly separated halves of the chains become the
    # two halves of a normal's scores, within-chain variance 1 - 2/pi of the total, so R-hat
    # -> sqrt(1 / (1 - 2/pi)) = 1.66, 66 times the 0.01 margin of the threshold.
    assert table.loc["x[0]", "r_hat"] > 1.6
    assert table.loc["x[1]", "r_hat"] <= 1.01  # the coordinate along which the modes agree
    problems = D.check(out, warn=False)
    assert "rhat" in {p.kind for p in problems}


def test_a_well_mixed_gaussian_warns_of_nothing():
    out = ef.HMC(num_leapfrog=5, num_warmup=200, num_samples=1000).run(
        _gaussian(2), torch.zeros(8, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", D.EnergyflowWarning)
        table = out.summary()
        assert D.check(out) == []
    assert float(table["r_hat"].max()) <= 1.01 and float(table["ess_bulk"].min()) >= 400


def test_too_few_draws_warn_of_ess():
    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 50))})  # 100 draws in total < 400
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D.check(idata)
    assert [str(w.message)[:19] for w in caught] == ["bulk ESS below 400 ", "tail ESS below 400 "]
    assert all(w.category is D.ConvergenceWarning for w in caught)
    stats = az.from_dict(posterior={"mu": rng.normal(size=(4, 200))},
                         sample_stats={"diverging": np.eye(4, 200, dtype=bool)})
    with pytest.warns(D.DivergenceWarning, match="4 transitions"):
        D.check(stats, kinds=("divergences",))


# --------------------------------------------------------------------------- InferenceData
eight_schools = eight_schools_noncentred
Y, SIGMA = torch.tensor(EIGHT_SCHOOLS_Y), torch.tensor(EIGHT_SCHOOLS_SIGMA)


@pytest.fixture(scope="module")
def eight_schools_run():
    m = ef.model(eight_schools, Y, SIGMA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.EnergyflowWarning)  # a short run: diagnostics may well complain
        return m, ef.HMC(num_leapfrog=5, num_warmup=150, num_samples=60, mass_matrix="diag").run(
            ef.compile(m), m.init(4, torch.Generator().manual_seed(0)), generator=torch.Generator().manual_seed(1))


def test_to_arviz_of_a_pyro_model_has_its_sites_stats_and_data(eight_schools_run):
    m, out = eight_schools_run
    idata = out.to_arviz()
    assert set(idata.groups()) == {"posterior", "unconstrained_posterior", "sample_stats", "observed_data"}
    post = idata.posterior
    assert list(post.data_vars) == ["mu", "tau", "theta_tilde", "theta"]  # deterministic sites included
    assert post["mu"].shape == (4, 60) and post["theta"].shape == (4, 60, 8)
    # constrained values: tau = exp(the state's coordinate); theta = mu + tau theta_tilde
    np.testing.assert_allclose(post["tau"].values, np.exp(out.draws[..., 1].numpy()), rtol=1e-6)
    np.testing.assert_allclose(post["theta"].values, post["mu"].values[..., None]
                               + post["tau"].values[..., None] * post["theta_tilde"].values, rtol=1e-5, atol=1e-5)
    # only tau's support differs from the real line: it alone is in the unconstrained group, as log tau
    assert list(idata.unconstrained_posterior.data_vars) == ["tau"]
    np.testing.assert_allclose(np.exp(idata.unconstrained_posterior["tau"].values), post["tau"].values, rtol=1e-6)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y.numpy())
    assert {"diverging", "energy", "acceptance_rate", "step_size", "n_steps", "lp"} <= set(idata.sample_stats.data_vars)
    assert idata.sample_stats["diverging"].dtype == bool
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.EnergyflowWarning)
        pd.testing.assert_frame_equal(out.summary(), az.summary(idata))


def test_constraining_in_chunks_gives_the_same_values(eight_schools_run, monkeypatch):
    _, out = eight_schools_run
    whole = out.to_arviz().posterior
    monkeypatch.setattr(D, "CONSTRAIN_CHUNK", 7)  # 240 rows in 35 traces
    chunked = out.to_arviz().posterior
    for name in whole.data_vars:
        np.testing.assert_array_equal(whole[name].values, chunked[name].values)


def test_pytree_results_name_their_leaves_and_runs_without_draws_are_refused():
    from graph_helpers import Quadratic, graph_space, random_masks

    B = 4
    x0 = {"x": torch.zeros(B, 4, 2), "adj": torch.zeros(B, 4, 4), "mask": random_masks(B, torch.Generator())}
    out = ef.MALA(step_size=0.2, num_samples=10).run(ef.compile(Quadratic(), space=graph_space()), x0,
                                                     generator=torch.Generator().manual_seed(1))
    idata = out.to_arviz()
    assert set(idata.posterior.data_vars) == {"x", "adj"}  # the bool mask is carried, not sampled
    assert idata.posterior["adj"].shape == (B, 10, 4, 4)
    plain = ef.MALA(step_size=0.2, num_steps=5).run(_gaussian(), torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(InvalidValueError, match="num_samples"):
        plain.to_arviz()


def test_without_arviz_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)  # import arviz raises ImportError
    with pytest.raises(D.MissingDependencyError, match=r"energyflow-em\[diagnostics\]"):
        D.rhat(np.zeros((2, 10)))
    assert issubclass(D.MissingDependencyError, (ef.errors.EnergyflowError, ImportError))


# --------------------------------------------------------------------------- plots
@pytest.mark.parametrize("backend", ["arviz", "matplotlib"])
def test_plot_trace_titles_and_labels_every_panel(eight_schools_run, backend):
    _, out = eight_schools_run
    fig = D.plot_trace(out, var_names=["mu", "theta"], max_parameters=3, backend=backend)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["mu (density per chain)", "mu (trace)", "mu (ranks)", "theta[0] (density per chain)",
                      "theta[0] (trace)", "theta[0] (ranks)", "theta[1] (density per chain)", "theta[1] (trace)",
                      "theta[1] (ranks)"]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert fig.get_suptitle().startswith("4 chains x 60 draws, max R-hat")
    with pytest.raises(InvalidValueError, match="no variable 'nope'"):
        D.plot_trace(out, var_names=["nope"], backend=backend)


def test_plot_trace_without_arviz_draws_a_result_with_matplotlib(monkeypatch):
    out = ef.MALA(step_size=0.5, num_samples=40).run(_gaussian(), torch.zeros(3, 2, dtype=torch.float64),
                                                     generator=torch.Generator().manual_seed(0))
    monkeypatch.setitem(sys.modules, "arviz", None)
    fig = D.plot_trace(out)
    assert [ax.get_title() for ax in fig.axes][1::3] == ["x[0] (trace)", "x[1] (trace)"]
    assert fig.get_suptitle() == "3 chains x 40 draws"
    with pytest.raises(D.MissingDependencyError):
        D.plot_trace(out, backend="arviz")
