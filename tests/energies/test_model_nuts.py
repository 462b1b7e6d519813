"""Whole Pyro models through ``ef.model`` against long runs of Pyro's own NUTS on the
same Pyro models (``MCMC(NUTS(model))``): eight schools (non-centred and centred) and a
two-component Gaussian mixture with ordered means.

Statistical design. The reference is four Pyro NUTS chains run one after another
(JIT-compiled to keep the file short; the same algorithm), pooled: draws ``(4, N)`` per
scalar quantity. energyflow runs ``CHAINS`` chains from Stan's uniform(-2, 2) start with
its adapted HMC or MALA (defaults: step size, leapfrog count and diagonal mass matrix
adapted in the warm-up, nothing tuned by hand) and keeps every post-warm-up draw
``(B, S)``. Both sides' Monte Carlo errors come from the same estimator, Pyro's
``effective_sample_size`` over (chains, draws):

* mean: se = sqrt(var_nuts / ESS_nuts + var_ef / ESS_ef);
* sd: the variance is the mean of ``d = (q - mean)^2``, so se(var) = sqrt(var(d_nuts) /
  ESS_nuts(d) + var(d_ef) / ESS_ef(d)) with the ESS of ``d`` itself, and
  se(sd) = se(var) / (2 sd) (delta method).

NUTS's ESS (~1000-2500 per quantity here) dominates the error: energyflow's 256 chains x
100-300 draws give ESS of several thousand. A quantity agrees when |difference| < 4.5 se:
with ~100 comparisons in the file a false alarm has probability ~1e-3 (Gaussian tails;
the ESS is an estimate, and 4.5 leaves room for it), while a wrong posterior is caught:
the negative control (log-Jacobian of ``tau = exp(u)`` left out) must fail. The
tolerance is ~0.1-0.2 posterior sd for means, which is what "agreement within Monte Carlo
error" can mean at this reference length. The reference itself must have mixed (split
R-hat < 1.05, ESS >= 300 for every quantity) or the test errors rather than compares.

The centred eight schools has a funnel (theta | tau collapses as tau -> 0). Its posterior
is the non-centred one (same mu, tau, theta), so it is compared against the non-centred
NUTS reference. energyflow's HMC must either agree *and* report its divergences (it does
diverge in the neck: a few percent of the transitions), so the test fails if the funnel
is sampled wrongly or silently. MALA has no divergence diagnostic (a rejected Langevin
step is not an integration failure); on the centred model it is not asserted (see
``benchmarks/README.md``: it is biased there by a few se).

The mixture: a few chains can end the warm-up stranded on the merged-means plateau
(both means at the data mean); they are counted, must be at most 5 % of the chains,
and are set aside before the comparison (see the mixture test's docstring).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import OrderedTransform
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

import energyflow as ef
from pyro_models import (EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools_centred,
                         eight_schools_noncentred)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("float64_default")]

F64 = torch.float64
Z = 4.5
CHAINS = 256


# --- the models -------------------------------------------------------------------------------
Y, SIGMA = EIGHT_SCHOOLS_Y, EIGHT_SCHOOLS_SIGMA


def mixture_data(n: int = 100, seed: int = 0) -> torch.Tensor:
    """A fixed bimodal sample: 35 % from N(-2, 1), 65 % from N(2, 1)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.rand(n, generator=g) < 0.35
    x = torch.where(first, -2.0 + torch.randn(n, generator=g), 2.0 + torch.randn(n, generator=g))
    return x.to(F64)


def mixture(x):
    """Two Gaussians of known scale 1, ordered means (a N(0, 5) pushed through the ordered
    transform: a proper prior on mu[0] < mu[1]), weight w ~ Beta(2, 2) on the first."""
    w = pyro.sample("w", dist.Beta(2.0, 2.0))
    mu = pyro.sample("mu", dist.TransformedDistribution(dist.Normal(0.0, 5.0).expand([2]).to_event(1),
                                                        OrderedTransform()))
    probs = torch.stack([w, 1.0 - w], -1)
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(probs=probs), dist.Normal(mu, 1.0)), obs=x)


def _eight_schools_args():
    return torch.tensor(Y, dtype=F64), torch.tensor(SIGMA, dtype=F64)


def _scalars(values: dict[str, torch.Tensor], lead: int) -> dict[str, torch.Tensor]:
    """``{site: (*lead, *shape)}`` -> ``{"site[i]": (*lead)}``, plus ``log tau`` where there is a tau
    (the funnel's coordinate: where a sampler that misses the neck is wrong first)."""
    out = {}
    for name, v in values.items():
        flat = v.reshape(*v.shape[:lead], -1)
        if flat.shape[-1] == 1 and v.dim() == lead:
            out[name] = flat[..., 0]
        else:
            for i in range(flat.shape[-1]):
                out[f"{name}[{i}]"] = flat[..., i]
    if "tau" in out:
        out["log tau"] = out["tau"].log()
    return out


# --- the long NUTS reference ------------------------------------------------------------------
NUTS_CHAINS = 4
NUTS_RUNS = {"eight_schools": (300, 1000), "mixture": (300, 600)}  # (warm-up, draws) per chain


def _nuts(model, args, warmup: int, draws: int) -> dict[str, torch.Tensor]:
    """Pyro's NUTS on the Pyro model itself, NUTS_CHAINS chains in turn: ``{quantity: (chains, draws)}``."""
    chains = []
    divergences = 0
    for c in range(NUTS_CHAINS):
        pyro.set_rng_seed(100 + c)
        mcmc = MCMC(NUTS(model, jit_compile=True, ignore_jit_warnings=True), num_samples=draws,
                    warmup_steps=warmup, disable_progbar=True)
        mcmc.run(*args)
        chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
        divergences += len(mcmc.diagnostics()["divergences"]["chain 0"])
    samples = {k: torch.stack([c[k] for c in chains]) for k in chains[0]}
    if "theta_tilde" in samples:  # the deterministic site (MCMC returns the latent sites only)
        samples["theta"] = samples["mu"].unsqueeze(-1) + samples["tau"].unsqueeze(-1) * samples["theta_tilde"]
    out = _scalars(samples, 2)
    for name, q in out.items():  # the reference must be good before anything is compared with it
        ess = float(effective_sample_size(q.unsqueeze(-1), 0, 1))
        rhat = float(split_gelman_rubin(q.unsqueeze(-1), 0, 1))
        assert ess >= 300 and rhat < 1.05, f"the NUTS reference has not mixed: {name} ESS {ess:.0f} R-hat {rhat:.3f}"
    out["_divergences"] = torch.tensor(divergences)
    return out


@pytest.fixture(scope="module")
def nuts_eight_schools():
    with _dtype(F64):
        return _nuts(eight_schools_noncentred, _eight_schools_args(), *NUTS_RUNS["eight_schools"])


@pytest.fixture(scope="module")
def nuts_mixture():
    with _dtype(F64):
        return _nuts(mixture, (mixture_data(),), *NUTS_RUNS["mixture"])


class _dtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


# --- energyflow -------------------------------------------------------------------------------
SAMPLERS = {  # defaults but for the run lengths and the diagonal mass matrix
    "hmc": lambda: ef.HMC(num_warmup=300, num_steps=100, mass_matrix="diag"),
    "mala": lambda: ef.MALA(num_warmup=600, num_steps=300, mass_matrix="diag"),
}


def _energyflow(model, args, sampler: str, seed: int = 0, chains: int = CHAINS, jacobian: bool = True):
    m = ef.model(model, *args)
    m.include_jacobian = jacobian
    x0 = m.init(chains, torch.Generator().manual_seed(seed))
    out = SAMPLERS[sampler]().run(ef.compile(m), x0, generator=torch.Generator().manual_seed(seed + 1),
                                  record_every=1)
    draws = out.trajectory[1:]  # (S, B, D): every post-warm-up iteration
    S, Bc, D = draws.shape
    values = {k: v.reshape(S, Bc, *v.shape[1:]).transpose(0, 1) for k, v in m.constrain(draws.reshape(-1, D)).items()}
    with torch.no_grad():
        out.info["chain_mean_potential"] = m(draws.reshape(-1, D)).reshape(S, Bc).mean(0)  # (B,)
    return _scalars(values, 2), out


STUCK_GAP = 20.0  # nats above the median chain: the posterior's own spread of -log p is ~1-2 nats (3-D)


def _set_aside_stuck(values: dict, out) -> tuple[dict, int]:
    """Chains whose mean potential stays STUCK_GAP above the median chain's, removed."""
    u = out.info["chain_mean_potential"]
    stuck = u > u.median() + STUCK_GAP
    return {k: v[~stuck] for k, v in values.items()}, int(stuck.sum())


def _moments(q: torch.Tensor) -> tuple[float, float, float, float, float]:
    """mean, sd, var, the mean's squared se, the variance's squared se (ESS-based), of draws ``(chains, draws)``."""
    mean = float(q.mean())
    d = (q - mean) ** 2
    var = float(d.mean())
    ess_q = float(effective_sample_size(q.unsqueeze(-1), 0, 1))
    ess_d = float(effective_sample_size(d.unsqueeze(-1), 0, 1))
    return mean, math.sqrt(var), var, var / ess_q, float(d.var()) / ess_d


def _compare(ef_values: dict, ref: dict, names=None) -> tuple[bool, list[str]]:
    ok, report = True, []
    for name in names or [k for k in ref if not k.startswith("_")]:
        m1, s1, _, se2_m1, se2_v1 = _moments(ef_values[name])
        m2, s2, _, se2_m2, se2_v2 = _moments(ref[name])
        z_mean = (m1 - m2) / math.sqrt(se2_m1 + se2_m2)
        se_sd = math.sqrt(se2_v1 + se2_v2) / (2.0 * s2)
        z_sd = (s1 - s2) / se_sd
        good = abs(z_mean) < Z and abs(z_sd) < Z
        ok &= good
        report.append(f"{name}: ef {m1:.3f} +- {s1:.3f}, NUTS {m2:.3f} +- {s2:.3f} (z mean {z_mean:+.2f}, "
                      f"z sd {z_sd:+.2f}, tol mean {Z * math.sqrt(se2_m1 + se2_m2):.3f}){'' if good else '  <-- '}")
    return ok, report


# --- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["hmc", "mala"])
def test_eight_schools_noncentred_agrees_with_nuts(nuts_eight_schools, sampler):
    values, out = _energyflow(eight_schools_noncentred, _eight_schools_args(), sampler)
    ok, report = _compare(values, nuts_eight_schools)
    assert ok, "\n".join(report)
    assert out.info["num_restarted"] <= CHAINS // 10, out.info["num_restarted"]


def test_eight_schools_centred_hmc_agrees_and_reports_the_funnel(nuts_eight_schools):
    """The funnel: HMC's leapfrog fails in the neck. It must say so (divergences are
    counted) and, over 256 chains, still agree with the non-centred reference."""
    values, out = _energyflow(eight_schools_centred, _eight_schools_args(), "hmc")
    transitions = CHAINS * SAMPLERS["hmc"]().num_steps
    assert out.num_divergences >= 0.001 * transitions, f"{out.num_divergences} divergences: the funnel went unreported"
    ok, report = _compare(values, nuts_eight_schools, ["mu", "tau", "log tau"] + [f"theta[{i}]" for i in range(8)])
    assert ok, f"{out.num_divergences} divergences in {transitions} transitions\n" + "\n".join(report)


def test_negative_control_without_the_jacobian_disagrees(nuts_eight_schools):
    """Leaving out log|d tau / du| samples another posterior; the comparison must see it."""
    values, _ = _energyflow(eight_schools_noncentred, _eight_schools_args(), "mala", jacobian=False)
    ok, report = _compare(values, nuts_eight_schools, ["tau", "log tau"])
    assert not ok, "\n".join(report)


@pytest.mark.parametrize("sampler", ["hmc", "mala"])
def test_mixture_with_ordered_means_agrees_with_nuts(nuts_mixture, sampler):
    """A few chains may end the warm-up on the merged-means plateau (mu[0] ~ mu[1] at the
    data mean, log spacing ~ -7, -log p ~100 above the other chains): they still accept
    moves, so the warm-up's restart (no acceptance) misses them, and they drift out
    only slowly (the push is the log-Jacobian's 1 per unit of log spacing). At most 5 %
    of the chains may be stuck so; the others must agree with NUTS. (Across seeds 0-5,
    MALA with 128 chains leaves 0-3 there, which biases the pooled mean of mu[0] by up
    to 0.3 sd: see the report in benchmarks/README.md.)"""
    m = ef.model(mixture, mixture_data())
    assert m.layout["mu"].support is dist.constraints.ordered_vector and m.dim == 3
    values, out = _energyflow(mixture, (mixture_data(),), sampler, chains=128)
    assert bool((values["mu[0]"] < values["mu[1]"]).all())  # the ordered support holds on every draw
    kept, stuck = _set_aside_stuck(values, out)
    assert stuck <= 0.05 * 128, f"{stuck} of 128 chains stuck far above the median chain's potential"
    ok, report = _compare(kept, nuts_mixture)
    assert ok, f"{stuck} chains set aside\n" + "\n".join(report)
