"""Whole Pyro models as energies: layout, supports, plates, vectorised chains, and
posteriors against closed forms.

Statistical design: many independent chains from Stan's uniform(-2, 2) start, adapted
with the defaults (no hand-chosen step size or preconditioner); final states are
independent draws of the posterior. For each checked quantity the mean is z-tested
against the closed form (se = sd / sqrt(B), |z| < 4.5: a false alarm below 1e-4 for the
handful of quantities per model) and the sample sd must lie within 10 % of the closed
form (se of an sd estimate ~ sd sqrt((kurtosis - 1) / 4B) = 1.6-3 % here at B = 1024).
The negative control drops the log-Jacobian of the map to the support and must fail.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import energyflow as ef
from energyflow.energies.model import ModelError

pytestmark = pytest.mark.usefixtures("float64_default")

F64 = torch.float64
B = 1024


# --- conjugate models with closed-form posteriors --------------------------------------------
def beta_binomial():
    a, b, k, n = 2.0, 3.0, 1, 3  # little data: the prior (and so the Jacobian) matters

    def fn():
        p = pyro.sample("p", dist.Beta(a, b))
        pyro.sample("k", dist.Binomial(n, p), obs=torch.tensor(float(k)))

    A, Bb = a + k, b + n - k
    mean = A / (A + Bb)
    return fn, (), {"p": (mean, math.sqrt(mean * (1 - mean) / (A + Bb + 1)))}


def normal_inverse_gamma():
    g = torch.Generator().manual_seed(0)
    x = 1.5 + 2.0 * torch.randn(20, generator=g)
    m0, k0, a0, b0 = 0.0, 1.0, 3.0, 4.0

    def fn(data):
        s2 = pyro.sample("sigma2", dist.InverseGamma(a0, b0))
        mu = pyro.sample("mu", dist.Normal(m0, (s2 / k0).sqrt()))
        with pyro.plate("data", len(data)):
            pyro.sample("x", dist.Normal(mu, s2.sqrt()), obs=data)

    n, xb = len(x), float(x.mean())
    kn, an = k0 + n, a0 + n / 2
    mn = (k0 * m0 + n * xb) / kn
    bn = b0 + 0.5 * float(((x - xb) ** 2).sum()) + k0 * n * (xb - m0) ** 2 / (2 * kn)
    return fn, (x,), {"mu": (mn, math.sqrt(bn / (kn * (an - 1)))),
                      "sigma2": (bn / (an - 1), math.sqrt(bn**2 / ((an - 1) ** 2 * (an - 2))))}


def dirichlet_multinomial():
    alpha = torch.tensor([1.0, 2.0, 3.0, 1.5])
    counts = torch.tensor([3.0, 10.0, 4.0, 1.0])

    def fn():
        theta = pyro.sample("theta", dist.Dirichlet(alpha))
        pyro.sample("c", dist.Multinomial(int(counts.sum()), theta), obs=counts)

    post = alpha + counts
    mean = post / post.sum()
    sd = (mean * (1 - mean) / (post.sum() + 1)).sqrt()
    return fn, (), {f"theta[{i}]": (float(mean[i]), float(sd[i])) for i in range(4)}


def linear_regression():
    g = torch.Generator().manual_seed(1)
    n, d = 30, 3
    X = torch.randn(n, d, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.7 * torch.randn(n, generator=g)
    a0, b0 = 2.0, 1.0  # sigma2 ~ InvGamma(a0, b0); w | sigma2 ~ N(0, sigma2 I)

    def fn(X, y):
        s2 = pyro.sample("sigma2", dist.InverseGamma(a0, b0))
        w = pyro.sample("w", dist.Normal(torch.zeros(d), s2.sqrt().unsqueeze(-1)).to_event(1))
        with pyro.plate("obs", n):  # (w * X).sum(-1): right-aligned, so it also runs for (B, 1, d) chains
            pyro.sample("y", dist.Normal((w * X).sum(-1), s2.sqrt()), obs=y)

    vn = torch.linalg.inv(torch.eye(d) + X.T @ X)
    wn = vn @ X.T @ y
    an = a0 + n / 2
    bn = b0 + 0.5 * float(y @ y - wn @ torch.linalg.solve(vn, wn))
    cov_w = bn / (an - 1) * vn
    out = {f"w[{i}]": (float(wn[i]), float(cov_w[i, i].sqrt())) for i in range(d)}
    out["sigma2"] = (bn / (an - 1), math.sqrt(bn**2 / ((an - 1) ** 2 * (an - 2))))
    return fn, (X, y), out


def _values(m: ef.Model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for name, v in m.constrain(x).items():
        if v.dim() == 1:
            out[name] = v
        else:
            for i in range(v.shape[1]):
                out[f"{name}[{i}]"] = v[:, i]
    return out


def _agrees(values: dict, truth: dict) -> tuple[bool, str]:
    report, ok = [], True
    for name, (mean, sd) in truth.items():
        v = values[name]
        z = (float(v.mean()) - mean) / (sd / math.sqrt(v.numel()))
        ratio = float(v.std()) / sd
        ok &= abs(z) < 4.5 and abs(ratio - 1) < 0.10
        report.append(f"{name}: z={z:+.2f} sd ratio={ratio:.3f}")
    return ok, "; ".join(report)


SAMPLERS = {
    "mala": lambda: ef.MALA(num_warmup=400, num_steps=200, mass_matrix="diag"),
    "hmc": lambda: ef.HMC(num_leapfrog=5, num_warmup=200, num_steps=50, mass_matrix="diag"),
}
FAST = [("beta_binomial", "mala"), ("beta_binomial", "hmc"), ("normal_inverse_gamma", "mala")]
SLOW = [("normal_inverse_gamma", "hmc"), ("dirichlet_multinomial", "mala"), ("dirichlet_multinomial", "hmc"),
        ("linear_regression", "mala"), ("linear_regression", "hmc")]
MODELS = {f.__name__: f for f in (beta_binomial, normal_inverse_gamma, dirichlet_multinomial, linear_regression)}


def _posterior(model_name: str, sampler: str, jacobian: bool = True, seed: int = 0):
    fn, args, truth = MODELS[model_name]()
    m = ef.model(fn, *args)
    m.include_jacobian = jacobian
    x0 = m.init(B, torch.Generator().manual_seed(seed))
    out = SAMPLERS[sampler]().run(ef.compile(m), x0, generator=torch.Generator().manual_seed(seed + 1))
    return m, out, truth


@pytest.mark.parametrize("model_name, sampler", FAST)
def test_conjugate_posteriors(model_name, sampler):
    m, out, truth = _posterior(model_name, sampler)
    ok, report = _agrees(_values(m, out.samples), truth)
    assert ok, report


@pytest.mark.slow
@pytest.mark.parametrize("model_name, sampler", SLOW)
def test_conjugate_posteriors_slow(model_name, sampler):
    m, out, truth = _posterior(model_name, sampler)
    ok, report = _agrees(_values(m, out.samples), truth)
    assert ok, report


@pytest.mark.parametrize("model_name", ["beta_binomial", "normal_inverse_gamma"])
def test_negative_control_without_the_jacobian(model_name):
    """Scoring the unconstrained state without log|dT/du| samples another density."""
    m, out, truth = _posterior(model_name, "mala", jacobian=False)
    assert not _agrees(_values(m, out.samples), truth)[0]


@pytest.mark.slow
def test_pyro_nuts_on_the_same_model_agrees():
    fn, args, truth = normal_inverse_gamma()
    m = ef.model(fn, *args)
    out = ef.PyroNUTS(num_samples=1500, warmup_steps=500).run(ef.compile(m), m.init(1, torch.Generator().manual_seed(0)),
                                                            generator=torch.Generator().manual_seed(1))
    draws = out.trajectory[:, 0]
    values = _values(m, draws)
    for name, (mean, sd) in truth.items():  # one chain of 1500 correlated draws: looser, 4 sd of its ESS ~ 500
        assert abs(float(values[name].mean()) - mean) < 4 * sd / math.sqrt(300)
        assert abs(float(values[name].std()) / sd - 1) < 0.2


# --- structure -------------------------------------------------------------------------------
def hierarchical(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)
    pyro.deterministic("tau_squared", tau**2)


Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def test_layout_constrain_and_the_log_joint_by_hand():
    m = ef.model(hierarchical, Y, SIGMA)
    assert list(m.layout) == ["mu", "tau", "theta"] and m.dim == 10 and m.max_plate_nesting == 1
    x = m.init(5, torch.Generator().manual_seed(0))
    assert float(x.abs().max()) < 2.0  # Stan's uniform(-2, 2)
    c = m.constrain(x)
    assert c["theta"].shape == (5, 8) and c["tau"].shape == (5,) and bool((c["tau"] > 0).all())
    assert torch.allclose(c["tau_squared"], c["tau"] ** 2)
    # The same number by hand: log priors + likelihood + log|d tau / d log tau| = log tau.
    mu, tau, theta = c["mu"], c["tau"], c["theta"]
    by_hand = (dist.Normal(0.0, 5.0).log_prob(mu) + dist.HalfCauchy(5.0).log_prob(tau) + torch.log(tau)
               + dist.Normal(mu[:, None], tau[:, None]).log_prob(theta).sum(1)
               + dist.Normal(theta, SIGMA).log_prob(Y).sum(1))
    assert torch.allclose(m(x), -by_hand)
    # Tempered: at eps the field is eps * (-log p).
    assert torch.allclose(ef.compile(m).energy(x, 0.5), -0.5 * by_hand)


def test_init_strategies_and_values_round_trip():
    m = ef.model(hierarchical, Y, SIGMA)
    value = {"mu": 1.0, "tau": 2.0, "theta": torch.arange(8.0)}
    x = m.init(3, strategy="value", value=value)
    c = m.constrain(x)
    assert torch.allclose(c["tau"], torch.full((3,), 2.0)) and torch.allclose(c["theta"][1], torch.arange(8.0))
    prior = m.init(4000, torch.Generator().manual_seed(0), strategy="prior")
    assert abs(float(m.constrain(prior)["mu"].std()) - 5.0) < 0.3  # mu ~ N(0, 5): sd within 6 se
    with pytest.raises(ValueError, match="outside its support"):
        m.init(2, strategy="value", value={**value, "tau": -1.0})
    with pytest.raises(ValueError, match="strategy"):
        m.init(2, strategy="median")


def test_vectorised_over_chains_not_a_loop():
    calls = []

    def counted(y, sigma):
        calls.append(1)
        hierarchical(y, sigma)

    m = ef.model(counted, Y, SIGMA)
    calls.clear()
    m(m.init(64, torch.Generator().manual_seed(0)))
    assert len(calls) == 1  # one traced run scores all 64 chains


def test_a_model_that_broadcasts_across_chains_is_refused():
    """X @ w-style code that is right for one parameter set but pairs every chain with
    every other under the chain plate must not be summed silently."""
    X, y = torch.randn(5, 2), torch.randn(5)

    def broadcasting(X, y):
        s = pyro.sample("s", dist.HalfNormal(1.0))
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("obs", 5):
            pyro.sample("y", dist.Normal((X * w.unsqueeze(-2)).sum(-1), s), obs=y)

    m = ef.model(broadcasting, X, y)
    with pytest.raises(ModelError, match="broadcasts"):
        m(m.init(4, torch.Generator().manual_seed(0)))


def test_refusals_name_the_problem():
    def discrete():
        pyro.sample("k", dist.Categorical(torch.ones(3) / 3))

    with pytest.raises(ModelError, match="discrete"):
        ef.model(discrete)

    def subsampled(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 100, subsample_size=10) as idx:
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])

    with pytest.raises(ModelError, match="subsample"):
        ef.model(subsampled, torch.zeros(100))
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        ef.model(hierarchical, Y, SIGMA)(torch.zeros(4, 3))


def test_composes_with_other_terms_and_pyro_nuts():
    m = ef.model(hierarchical, Y, SIGMA)
    field = ef.compile(m + ef.Repulsion(sigma=1.0))
    x = m.init(6, torch.Generator().manual_seed(0))
    e, g = field.energy_and_grad(x, 0.3)
    assert e.shape == (6,) and g.shape == (6, 10) and bool(torch.isfinite(g).all())
    out = ef.PyroNUTS(num_samples=5, warmup_steps=5).run(ef.compile(m), x[:2], generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (2, 10)


def test_a_learned_potential_as_a_prior_site():
    """pyro.sample("z", Boltzmann(V)) adds V itself to the field (a learned potential's
    coupling), while the rest of the model is tempered."""
    V = ef.GaussianPotential(torch.zeros(2), torch.eye(2))

    def denoise(y):
        z = pyro.sample("z", ef.Boltzmann(V, event_shape=2))
        s = pyro.sample("s", dist.HalfNormal(0.5))
        pyro.sample("y", dist.Normal(z, s.unsqueeze(-1)).to_event(1), obs=y)

    y = torch.tensor([0.3, -0.2])
    m = ef.model(denoise, y)
    assert m.layout["z"].size == 2 and m.layout["s"].size == 1
    x = m.init(7, torch.Generator().manual_seed(0))
    c = m.constrain(x)
    rest = (dist.HalfNormal(0.5).log_prob(c["s"]) + torch.log(c["s"])
            + dist.Normal(c["z"], c["s"][:, None]).log_prob(y).sum(1))
    for eps in (1.0, 0.25):
        assert torch.allclose(ef.compile(m).energy(x, eps), V(c["z"]) - eps * rest)
    with pytest.raises(ValueError, match="prior"):
        m.init(3, strategy="prior")  # a learned potential cannot be drawn from


def test_deterministic_sites_inside_plates_and_outside_the_latents():
    def noncentred(y, sigma):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", len(y)):
            eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
            theta = pyro.deterministic("theta", mu + tau * eta)
            pyro.sample("obs", dist.Normal(theta, sigma), obs=y)
        pyro.deterministic("n_schools", torch.tensor(float(len(y))))

    m = ef.model(noncentred, Y, SIGMA)
    c = m.constrain(m.init(6, torch.Generator().manual_seed(0)))
    assert c["theta"].shape == (6, 8) and c["n_schools"].shape == (6,)
    assert torch.allclose(c["theta"], c["mu"][:, None] + c["tau"][:, None] * c["eta"])
    assert bool((c["n_schools"] == 8).all())


def test_poutine_handlers_act_as_in_pyro():
    from pyro import poutine

    fn, args, _ = beta_binomial()
    m, scaled = ef.model(fn, *args), ef.model(poutine.scale(fn, scale=2.0), *args)
    masked = ef.model(poutine.mask(fn, mask=torch.tensor(False)), *args)
    x = m.init(5, torch.Generator().manual_seed(0))
    log_p = m.log_joint(x, include_jacobian=False)[0]
    assert torch.allclose(scaled.log_joint(x, include_jacobian=False)[0], 2.0 * log_p)
    assert torch.allclose(masked.log_joint(x, include_jacobian=False)[0], torch.zeros(5))
