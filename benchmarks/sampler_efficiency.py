"""Sampler efficiency: effective samples per second and per gradient evaluation of
energyflow's adapted HMC and MALA (256 chains in one batch) against Pyro's NUTS on the
same potentials (issue 9). The issue's goal: energyflow >= 10x Pyro's NUTS in ESS per
second with 256 parallel chains.

Models (unconstrained, float64; the target is exp(-U(x)), one ``ef.Energy`` module per
model used by both libraries):

- ``gaussian100``: 100-D Gaussian, zero mean, diagonal covariance with standard
  deviations ``logspace(0, 1.5, 100)`` (1 ... 31.6, condition number 1000);
- ``eight_schools``: non-centred eight schools, state ``(mu, log tau, theta_tilde[8])``
  (10-D): mu ~ N(0, 5), tau ~ HalfCauchy(5), theta_tilde ~ N(0, 1),
  y ~ N(mu + tau theta_tilde, sigma), plus the log-Jacobian ``log tau`` of tau = exp(.);
- ``logistic``: Bayesian logistic regression on scikit-learn's breast cancer data
  (569 x 30, features standardised, plus an intercept: 31-D), prior N(0, 1) on every
  coefficient (intercept included).

Whole Pyro models (``PYRO_MODELS``): written once as Pyro models; energyflow samples
``ef.compile(ef.model(fn, *args))`` (the flat unconstrained state of ``ef.model``) and
NUTS runs ``MCMC(NUTS(fn))`` on the Pyro model itself, as a Pyro user would (Pyro's
defaults, its own ``init_to_uniform`` start, which is Stan's uniform(-2, 2) too). ESS,
R-hat and the mean check are computed on the *constrained* values, every latent site and
``pyro.deterministic`` site flattened to columns by ``m.constrain`` (NUTS's constrained
draws are mapped back to the same state and through the same ``m.constrain``):

- ``pyro_eight_schools``: the non-centred eight schools of ``eight_schools`` as a Pyro
  model (``theta = mu + tau theta_tilde`` a deterministic site): the same unconstrained
  target (``biject_to(positive)`` is ``exp``), so its rows against ``eight_schools``
  show what running a Pyro model costs each library; columns mu, tau, theta_tilde[8],
  theta[8];
- ``pyro_mixture``: two Gaussians of known scale 1, ordered means (``N(0, 5)`` pushed
  through ``OrderedTransform``: support ``ordered_vector``), weight ``w ~ Beta(2, 2)``,
  ``MixtureSameFamily`` likelihood over 100 fixed-seed points (35 % from N(-2, 1), 65 %
  from N(2, 1)); columns w, mu[0], mu[1];
- the four conjugate models of ``tests/energies/test_model.py`` (issue 10: "ESS per
  second on these models against Pyro NUTS"), the same Pyro models, data recipes, seeds
  and priors, written here with float64 data and prior parameters:
  ``pyro_beta_binomial`` (p ~ Beta(2, 3), k = 1 of n = 3; column p),
  ``pyro_normal_inverse_gamma`` (sigma2 ~ InvGamma(3, 4), mu ~ N(0, sigma2), 20 points
  1.5 + 2 N(0, 1) from generator seed 0; columns sigma2, mu),
  ``pyro_dirichlet_multinomial`` (theta ~ Dirichlet(1, 2, 3, 1.5), counts (3, 10, 4, 1);
  the 3-D stick-breaking state, columns theta[0..3]) and ``pyro_linear_regression``
  (sigma2 ~ InvGamma(2, 1), w | sigma2 ~ N(0, sigma2 I_3), y = X w + noise with X (30, 3),
  w = (1, -2, 0.5), noise sd 0.7, generator seed 1; columns sigma2, w[0..2]).

For the Pyro models NUTS's gradient evaluations are counted by a wrapper around the model
that sees whether the traced latent values carry a gradient.

Methods:

- energyflow ``HMC``: 256 chains in one batch, ``mass_matrix="diag"``, Stan-style
  windowed warm-up, dual averaging to 0.8, ``num_leapfrog`` per model (``LEAPFROG``,
  jitter 0.2 per chain: every iteration costs the largest of the 256 counts, about
  1.2 x ``num_leapfrog`` gradient evaluations). The counts (5, 5, 20) were picked with
  ``--pilot`` (energyflow HMC alone, L in 5/10/20/40, 500 warm-up + 200 draws, pilot
  seed 99, by min-ESS per gradient evaluation), not by the comparison with NUTS; the
  four conjugate models' counts by the same pilot (``--pilot --hmc-draws 200 --models
  <the four>``; for a Pyro model the pilot's ESS is on the constrained columns, as in the
  main run), the pilot table in ``benchmarks/README.md``;
- energyflow ``MALA``: 256 chains, ``mass_matrix="diag"``, dual averaging to 0.574;
- Pyro NUTS as a Pyro user runs it: ``NUTS(potential_fn=...)`` with Pyro's defaults
  (adapted step size and diagonal mass matrix, target 0.8, max tree depth 10, no JIT)
  in ``MCMC(kernel, num_samples, warmup_steps, initial_params={"x": x0})`` on ONE chain
  of shape ``(D,)``; ``potential_fn`` is the same energy on ``x.unsqueeze(0)``. Pyro
  differentiates ``potential_fn`` with autograd: each call with a gradient-carrying
  input is one gradient evaluation (counted by a wrapper; calls without gradient are
  counted separately). ``--nuts-chains`` chains (default 4) are run one after another
  in the same process, as four separate ``MCMC`` runs, and pooled: their times and
  gradients are summed.

All chains start uniform on [-2, 2]^D (Stan's default initialisation).

ESS is the bulk ESS of ``energyflow.diagnostics.ess`` (ArviZ's rank-normalised estimator,
Vehtari et al. 2021, the number Stan and NumPyro report) on draws ``(chains, draws, D)``
for every method, energyflow's kept draws (``num_samples=...``) and NUTS's alike;
reported: the minimum and the median over coordinates, and the minimum tail ESS. Results
saved before this change (``--from-json`` of an older file) hold Pyro's estimator
(``pyro.ops.stats.effective_sample_size``), which is not rank-normalised.
ESS/s divides the minimum ESS by the wall time of the
whole run (warm-up included), and also by the sampling phase alone. Gradient
evaluations: for energyflow one evaluation is the batched gradient of all 256 chains
(``SampleResult.num_grad_evals``, warm-up included); "per-chain gradients" multiplies by
256. For NUTS both counts are the same (one chain per evaluation). Sanity checks:
rank-normalised split R-hat (``energyflow.diagnostics.rhat``) over the 256 chains (and
over the NUTS chains), the pooled per-coordinate variance over the true variance on the Gaussian
(should be ~1), and the largest |mean difference| / sd against NUTS's pooled draws on
the other models. On the four conjugate models every method is also checked against the
closed-form posterior (``exact_posterior``: Beta; Normal-Inverse-Gamma; Dirichlet;
conjugate linear regression, sigma2 inverse gamma and w | sigma2 ~ N(wn, sigma2 Vn)):
per constrained column the pooled mean and sd against the exact mean and sd, reported
as the largest |mean - exact mean| / exact sd, the same over the Monte Carlo se
(exact sd / sqrt(that column's ESS); a few units at most if the draws are right and the
ESS is), and the range of sd / exact sd.

Timing: wall clock of the sampler's ``run`` only (ESS and checks are computed outside
the timed region); the sampling-only time of an energyflow run starts at the first
gradient evaluation after warm-up (timestamps recorded by the energy module), that of
a NUTS run at Pyro's hook after the last warm-up iteration. Methods are run round-robin
(``time_interleaved``'s order, rotated every repeat) with a different seed per repeat,
and medians over ``--repeats`` (default 2, quick 1) are reported.

Threads: ``--threads 1`` by default (not the suite's 2). The machine has two cores
shared with other work (test runs); one thread per process keeps both libraries on one
core, and NUTS's single chain could not use a second thread anyway (its tensors are
tiny) while energyflow's batch of 256 could: this default does not flatter energyflow.

Run:
    .venv/bin/python benchmarks/sampler_efficiency.py             # full: 2 repeats (about 10-15 minutes)
    .venv/bin/python benchmarks/sampler_efficiency.py --quick     # smoke run (about 1 minute)
    .venv/bin/python benchmarks/sampler_efficiency.py --pilot --hmc-draws 200   # HMC num_leapfrog pilot only
    .venv/bin/python benchmarks/sampler_efficiency.py --models pyro_eight_schools pyro_mixture
        # a subset; the saved JSON's other models are kept (merged) when their settings match
    .venv/bin/python benchmarks/sampler_efficiency.py --models pyro_beta_binomial pyro_normal_inverse_gamma \
        pyro_dirichlet_multinomial pyro_linear_regression   # the conjugate models (about 7 minutes)
    .venv/bin/python benchmarks/sampler_efficiency.py --from-json benchmarks/results/sampler_efficiency.json
        # re-derive the rates and re-print the tables of a saved result (no sampling)

Subsets: with ``--models`` naming fewer than all models, the models of the existing
``benchmarks/results/sampler_efficiency.json`` that were not re-run are carried over into
the new file (their runs, environment and time kept under ``merged``), provided the run
settings (warm-up/draws, NUTS chains, repeats, quick) are the same; otherwise the script
stops before sampling (use ``--no-json`` or ``--no-merge``).
"""

# ruff: noqa: B023  (the closures over loop variables are called within their own iteration)
from __future__ import annotations

import math
import statistics
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import (
        RESULTS_DIR,
        base_parser,
        env_info,
        markdown_table,
        set_threads,
        time_interleaved,
        write_result,
    )
else:  # imported as benchmarks.sampler_efficiency
    from ._common import (
        RESULTS_DIR,
        base_parser,
        env_info,
        markdown_table,
        set_threads,
        time_interleaved,
        write_result,
    )

import torch
import torch.nn.functional as F

import energyflow as ef
from energyflow.diagnostics import EnergyflowWarning

NAME = "sampler_efficiency"
DTYPE = torch.float64
CHAINS = 256
CONJUGATE = ("pyro_beta_binomial", "pyro_normal_inverse_gamma", "pyro_dirichlet_multinomial",
             "pyro_linear_regression")  # closed-form posteriors: checked against them (exact_posterior)
PYRO_MODELS = ("pyro_eight_schools", "pyro_mixture") + CONJUGATE
MODELS = ("gaussian100", "eight_schools", "logistic") + PYRO_MODELS
# Mean leapfrog steps per HMC iteration, chosen with --pilot (see the README); the Pyro
# eight schools is eight_schools' unconstrained target and inherits its L; the mixture
# (3-D, near-Gaussian posterior) was not piloted and takes the small models' 5; the four
# conjugate models' L are the pilot's best min ESS per grad eval (--pilot --hmc-draws 200).
LEAPFROG = {"gaussian100": 5, "eight_schools": 5, "logistic": 20, "pyro_eight_schools": 5, "pyro_mixture": 5,
            "pyro_beta_binomial": 5, "pyro_normal_inverse_gamma": 10, "pyro_dirichlet_multinomial": 10,
            "pyro_linear_regression": 5}
GOAL = 10.0


# --------------------------------------------------------------------------- models
class Stamped:
    """Records ``time.perf_counter()`` at every call whose input carries a gradient."""

    stamps: list[float] | None = None

    def _stamp(self, x: torch.Tensor) -> None:
        if self.stamps is not None and x.requires_grad:
            self.stamps.append(time.perf_counter())


class Gaussian100(Stamped, ef.GaussianPotential):
    """``ef.GaussianPotential`` with the gradient timestamps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._stamp(x)
        return super().forward(x)


class EightSchools(Stamped, ef.Energy):
    """Non-centred eight schools on ``(mu, log tau, theta_tilde[8])``; (B, 10) -> (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("y", torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=DTYPE))
        self.register_buffer("sigma", torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=DTYPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._stamp(x)
        D = torch.distributions
        mu, log_tau, tt = x[:, 0], x[:, 1], x[:, 2:]
        tau = torch.exp(log_tau)
        zero, one = torch.zeros((), dtype=x.dtype), torch.ones((), dtype=x.dtype)
        lp = D.Normal(zero, 5.0 * one, validate_args=False).log_prob(mu)
        lp = lp + D.HalfCauchy(5.0 * one, validate_args=False).log_prob(tau) + log_tau  # + log |d tau / d log tau|
        lp = lp + D.Normal(zero, one, validate_args=False).log_prob(tt).sum(-1)
        theta = mu[:, None] + tau[:, None] * tt
        lp = lp + D.Normal(theta, self.sigma, validate_args=False).log_prob(self.y).sum(-1)
        return -lp


class Logistic(Stamped, ef.Energy):
    """Bayesian logistic regression, N(0, 1) prior on all 31 coefficients; (B, 31) -> (B,)."""

    def __init__(self) -> None:
        super().__init__()
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        X = torch.as_tensor(data.data, dtype=DTYPE)
        X = (X - X.mean(0)) / X.std(0)
        X = torch.cat([torch.ones(X.shape[0], 1, dtype=DTYPE), X], dim=1)  # intercept first
        self.register_buffer("X", X)
        self.register_buffer("yt", torch.as_tensor(data.target, dtype=DTYPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._stamp(x)
        eta = x @ self.X.T  # (B, 569)
        nll = (F.softplus(eta) - self.yt * eta).sum(-1)  # -log Bernoulli(y | sigmoid(eta))
        return nll + 0.5 * (x * x).sum(-1) + 0.5 * x.shape[-1] * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- Pyro models
def pyro_eight_schools(y, sigma):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * theta_tilde)
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def mixture_data(n: int = 100, seed: int = 0) -> torch.Tensor:
    """A fixed bimodal sample: 35 % from N(-2, 1), 65 % from N(2, 1)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.rand(n, generator=g) < 0.35
    x = torch.where(first, -2.0 + torch.randn(n, generator=g), 2.0 + torch.randn(n, generator=g))
    return x.to(DTYPE)


def pyro_mixture(x):
    import pyro
    import pyro.distributions as dist
    from pyro.distributions.transforms import OrderedTransform

    w = pyro.sample("w", dist.Beta(2.0, 2.0))
    mu = pyro.sample("mu", dist.TransformedDistribution(dist.Normal(0.0, 5.0).expand([2]).to_event(1),
                                                        OrderedTransform()))
    probs = torch.stack([w, 1.0 - w], -1)
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(probs=probs), dist.Normal(mu, 1.0)), obs=x)


# Conjugate models with closed-form posteriors: those of tests/energies/test_model.py (same
# Pyro models, data recipes, seeds and priors), written here with float64 data and prior
# parameters (DTYPE), so that Pyro's own NUTS runs in float64 too.
BB_A, BB_B, BB_K, BB_N = 2.0, 3.0, 1, 3  # Beta(a, b) prior, k successes in n trials
NIG_M0, NIG_K0, NIG_A0, NIG_B0 = 0.0, 1.0, 3.0, 4.0  # sigma2 ~ InvGamma(a0, b0), mu ~ N(m0, sigma2 / k0)
DM_ALPHA, DM_COUNTS = [1.0, 2.0, 3.0, 1.5], [3.0, 10.0, 4.0, 1.0]
LR_A0, LR_B0 = 2.0, 1.0  # sigma2 ~ InvGamma(a0, b0); w | sigma2 ~ N(0, sigma2 I)


def _c(v) -> torch.Tensor:
    return torch.tensor(v, dtype=DTYPE)


def pyro_beta_binomial(k):
    import pyro
    import pyro.distributions as dist

    p = pyro.sample("p", dist.Beta(_c(BB_A), _c(BB_B)))
    pyro.sample("k", dist.Binomial(BB_N, p), obs=k)


def nig_data() -> torch.Tensor:
    """20 points, 1.5 + 2 N(0, 1), generator seed 0 (the test's recipe, float64)."""
    g = torch.Generator().manual_seed(0)
    return 1.5 + 2.0 * torch.randn(20, generator=g, dtype=DTYPE)


def pyro_normal_inverse_gamma(data):
    import pyro
    import pyro.distributions as dist

    s2 = pyro.sample("sigma2", dist.InverseGamma(_c(NIG_A0), _c(NIG_B0)))
    mu = pyro.sample("mu", dist.Normal(NIG_M0, (s2 / NIG_K0).sqrt()))
    with pyro.plate("data", len(data)):
        pyro.sample("x", dist.Normal(mu, s2.sqrt()), obs=data)


def pyro_dirichlet_multinomial(alpha, counts):
    import pyro
    import pyro.distributions as dist

    theta = pyro.sample("theta", dist.Dirichlet(alpha))
    pyro.sample("c", dist.Multinomial(int(counts.sum()), theta), obs=counts)


def lr_data() -> tuple[torch.Tensor, torch.Tensor]:
    """X (30, 3) ~ N(0, 1), y = X (1, -2, 0.5) + 0.7 N(0, 1), generator seed 1 (float64)."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(30, 3, generator=g, dtype=DTYPE)
    y = X @ _c([1.0, -2.0, 0.5]) + 0.7 * torch.randn(30, generator=g, dtype=DTYPE)
    return X, y


def pyro_linear_regression(X, y):
    import pyro
    import pyro.distributions as dist

    n, d = X.shape
    s2 = pyro.sample("sigma2", dist.InverseGamma(_c(LR_A0), _c(LR_B0)))
    w = pyro.sample("w", dist.Normal(torch.zeros(d, dtype=DTYPE), s2.sqrt().unsqueeze(-1)).to_event(1))
    with pyro.plate("obs", n):  # (w * X).sum(-1): right-aligned, so it also runs for (B, 1, d) chains
        pyro.sample("y", dist.Normal((w * X).sum(-1), s2.sqrt()), obs=y)


def exact_posterior(name: str) -> dict[str, tuple[float, float]]:
    """Closed-form posterior mean and sd of every constrained column of a conjugate model."""
    def inv_gamma(a: float, b: float) -> tuple[float, float]:  # mean and sd of InvGamma(a, b), a > 2
        return b / (a - 1), math.sqrt(b**2 / ((a - 1) ** 2 * (a - 2)))

    if name == "pyro_beta_binomial":  # p | k ~ Beta(a + k, b + n - k)
        A, B = BB_A + BB_K, BB_B + BB_N - BB_K
        mean = A / (A + B)
        return {"p": (mean, math.sqrt(mean * (1 - mean) / (A + B + 1)))}
    if name == "pyro_normal_inverse_gamma":  # sigma2 ~ InvGamma(an, bn), mu | sigma2 ~ N(mn, sigma2 / kn)
        x = nig_data()
        n, xb = len(x), float(x.mean())
        kn, an = NIG_K0 + n, NIG_A0 + n / 2
        mn = (NIG_K0 * NIG_M0 + n * xb) / kn
        bn = NIG_B0 + 0.5 * float(((x - xb) ** 2).sum()) + NIG_K0 * n * (xb - NIG_M0) ** 2 / (2 * kn)
        return {"sigma2": inv_gamma(an, bn), "mu": (mn, math.sqrt(bn / (kn * (an - 1))))}
    if name == "pyro_dirichlet_multinomial":  # theta | c ~ Dirichlet(alpha + c)
        post = _c(DM_ALPHA) + _c(DM_COUNTS)
        mean = post / post.sum()
        sd = (mean * (1 - mean) / (post.sum() + 1)).sqrt()
        return {f"theta[{i}]": (float(mean[i]), float(sd[i])) for i in range(len(post))}
    if name == "pyro_linear_regression":  # sigma2 ~ InvGamma(an, bn), w | sigma2 ~ N(wn, sigma2 Vn)
        X, y = lr_data()
        n, d = X.shape
        vn = torch.linalg.inv(torch.eye(d, dtype=DTYPE) + X.T @ X)
        wn = vn @ X.T @ y
        an = LR_A0 + n / 2
        bn = LR_B0 + 0.5 * float(y @ y - wn @ torch.linalg.solve(vn, wn))
        cov_w = bn / (an - 1) * vn  # marginal of w: multivariate t with 2 an dof, this covariance
        out = {"sigma2": inv_gamma(an, bn)}
        out.update({f"w[{i}]": (float(wn[i]), float(cov_w[i, i].sqrt())) for i in range(d)})
        return out
    raise ValueError(name)


def exact_check(run: dict, names: list[str], exact: dict[str, tuple[float, float]]) -> dict:
    """The pooled draws' per-column mean and sd against the closed form: the largest
    |mean - exact mean| / exact sd, the same over its Monte Carlo se (exact sd / sqrt(that
    column's ESS)), and the range of sd / exact sd."""
    idx = [names.index(c) for c in exact]
    mean, sd, ess = run["mean"][idx], run["sd"][idx], run["ess"][idx]
    m0 = torch.tensor([exact[c][0] for c in exact], dtype=DTYPE)
    s0 = torch.tensor([exact[c][1] for c in exact], dtype=DTYPE)
    dev = (mean - m0).abs() / s0
    ratio = sd / s0
    return {"max_abs_mean_diff_over_sd_vs_exact": float(dev.max()),
            "max_abs_mean_diff_column_vs_exact": list(exact)[int(dev.argmax())],
            "max_abs_z_vs_exact": float((dev * ess.sqrt()).max()),
            "sd_ratio_vs_exact": {"min": float(ratio.min()), "max": float(ratio.max())}}


def pyro_spec(name: str):
    """The Pyro model function and its arguments."""
    if name == "pyro_eight_schools":
        eight = EightSchools()
        return pyro_eight_schools, (eight.y, eight.sigma)
    if name == "pyro_mixture":
        return pyro_mixture, (mixture_data(),)
    if name == "pyro_beta_binomial":
        return pyro_beta_binomial, (_c(float(BB_K)),)
    if name == "pyro_normal_inverse_gamma":
        return pyro_normal_inverse_gamma, (nig_data(),)
    if name == "pyro_dirichlet_multinomial":
        return pyro_dirichlet_multinomial, (_c(DM_ALPHA), _c(DM_COUNTS))
    if name == "pyro_linear_regression":
        return pyro_linear_regression, lr_data()
    raise ValueError(name)


class StampedModel(Stamped, ef.Model):
    """``ef.model(fn, *args)`` with the gradient timestamps (the field calls ``log_joint``)."""

    def log_joint(self, x: torch.Tensor, include_jacobian: bool | None = None):
        self._stamp(x)
        return super().log_joint(x, include_jacobian)


def constrained(m: ef.Model, draws: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Unconstrained draws ``(chains, draws, D)`` -> constrained columns ``(chains, draws, K)``
    (every latent and deterministic site of ``m.constrain``, flattened) and their names."""
    C, S, D = draws.shape
    values = m.constrain(draws.reshape(C * S, D))
    cols, names = [], []
    for site, v in values.items():
        flat = v.reshape(C * S, -1)
        cols.append(flat)
        names += [site] if v.dim() == 1 else [f"{site}[{i}]" for i in range(flat.shape[1])]
    return torch.cat(cols, 1).reshape(C, S, -1), names


def make_model(name: str) -> tuple[ef.Energy, int, torch.Tensor | None]:
    """The energy module, its dimension and (Gaussian only) the true variances."""
    if name in PYRO_MODELS:
        fn, fargs = pyro_spec(name)
        m = StampedModel(fn, *fargs)
        return m, m.dim, None
    if name == "gaussian100":
        sd = torch.logspace(0, 1.5, 100, dtype=DTYPE)
        return Gaussian100(torch.zeros(100, dtype=DTYPE), torch.diag(sd**2)), 100, sd**2
    if name == "eight_schools":
        return EightSchools(), 10, None
    if name == "logistic":
        return Logistic(), 31, None
    raise ValueError(name)


def init_points(n: int, dim: int, seed: int) -> torch.Tensor:
    """Stan's default initialisation: uniform on [-2, 2]^dim."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, dim, generator=g, dtype=DTYPE) * 4.0 - 2.0)


# --------------------------------------------------------------------------- runs
def ef_run(kind: str, energy, field, dim: int, seed: int, warmup: int, draws: int, leapfrog: int) -> dict:
    """One energyflow run of 256 chains; draws (chains, draws, D) and the counts."""
    if kind == "HMC":
        sampler = ef.HMC(step_size=0.1, num_leapfrog=leapfrog, num_samples=draws, num_warmup=warmup,
                         mass_matrix="diag", target_accept=0.8, jitter=0.2)
    else:
        sampler = ef.MALA(step_size=0.1, num_samples=draws, num_warmup=warmup, mass_matrix="diag",
                          target_accept=0.574)
    x0 = init_points(CHAINS, dim, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    energy.stamps = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # short runs may diverge; the tables report divergences
        warnings.simplefilter("ignore", EnergyflowWarning)
        out = sampler.run(field, x0, generator=gen)
    t1 = time.perf_counter()
    stamps, energy.stamps = energy.stamps, None
    evals, evals_warm = out.num_grad_evals, out.info["num_grad_evals_warmup"]
    if len(stamps) == evals:  # every counted gradient stamped: the sampling phase starts at stamp evals_warm
        t_sample = t1 - stamps[evals_warm]
        split = "timestamp"
    else:  # fall back: the batched gradient costs the same in both phases
        t_sample = (t1 - t0) * (evals - evals_warm) / evals
        split = f"proportional ({len(stamps)} stamps, {evals} evals)"
    draws_t = out.draws  # (chains, draws, D): the kept post-warm-up states
    return {
        "draws": draws_t, "wall_s": t1 - t0, "sampling_s": t_sample, "split": split,
        "grad_evals": evals, "grad_evals_warmup": evals_warm, "chains": CHAINS,
        "per_chain_grads": evals * CHAINS, "acceptance": out.mean_acceptance,
        "divergences": out.num_divergences, "step_size": float(out.info["step_size"]),
        "warmup_acceptance": out.info.get("warmup_acceptance"), "num_restarted": out.info.get("num_restarted"),
    }


def nuts_run(energy, dim: int, seed: int, warmup: int, draws: int, chains: int) -> dict:
    """``chains`` single-chain Pyro NUTS runs, one after another; draws pooled."""
    import pyro
    from pyro.infer.mcmc import MCMC, NUTS

    all_draws, wall, samp, grads, grads_warm, calls, acc, div, steps = [], 0.0, 0.0, 0, 0, 0, [], 0, []
    for c in range(chains):
        x0 = init_points(1, dim, seed + 7919 * c)[0]
        count = {"calls": 0, "grads": 0}

        def potential_fn(params: dict) -> torch.Tensor:
            x = params["x"]
            count["calls"] += 1
            if x.requires_grad:  # Pyro will differentiate this call: one gradient evaluation
                count["grads"] += 1
            return energy(x.unsqueeze(0))[0]

        marks: dict = {}

        def hook(kernel, params, stage, i) -> None:
            if stage == "Warmup" and i == warmup - 1:
                marks["t"], marks["grads"] = time.perf_counter(), count["grads"]
            elif stage == "Sample":
                marks["accept"] = float(kernel._mean_accept_prob)  # reset by the kernel at the end

        pyro.set_rng_seed(seed + 7919 * c + 1)
        kernel = NUTS(potential_fn=potential_fn)  # Pyro's defaults: adapt step size + diagonal mass
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, initial_params={"x": x0.clone()},
                    disable_progbar=True, hook_fn=hook)
        t0 = time.perf_counter()
        mcmc.run()
        t1 = time.perf_counter()
        all_draws.append(mcmc.get_samples()["x"].detach())
        wall += t1 - t0
        samp += t1 - marks.get("t", t0)
        grads += count["grads"]
        grads_warm += marks.get("grads", 0)
        calls += count["calls"]
        acc.append(marks.get("accept", float("nan")))
        div += len(mcmc.diagnostics().get("divergences", {}).get("chain 0", []))
        steps.append(float(kernel.step_size))
    return {
        "draws": torch.stack(all_draws), "wall_s": wall, "sampling_s": samp, "split": "hook",
        "grad_evals": grads, "grad_evals_warmup": grads_warm, "potential_calls": calls, "chains": chains,
        "per_chain_grads": grads, "acceptance": statistics.fmean(acc), "divergences": div,
        "step_size": statistics.median(steps), "warmup_acceptance": None,
    }


def nuts_model_run(name: str, m: ef.Model, seed: int, warmup: int, draws: int, chains: int,
                   jit: bool = False) -> dict:
    """``chains`` runs of Pyro's ``MCMC(NUTS(fn))`` on the Pyro model itself, one after another;
    draws pooled and mapped to ``m``'s unconstrained state (for the same ``m.constrain``)."""
    import pyro
    from pyro.infer.mcmc import MCMC, NUTS
    from pyro.poutine.messenger import Messenger

    fn, fargs = pyro_spec(name)
    count = {"calls": 0, "grads": 0}

    class GradProbe(Messenger):  # did this trace run on latent values that carry a gradient?
        grad = False

        def _pyro_post_sample(self, msg) -> None:
            v = msg["value"]
            if not self.grad and isinstance(v, torch.Tensor) and v.requires_grad:
                self.grad = True

    def counted(*a, **k):
        probe = GradProbe()
        with probe:
            out = fn(*a, **k)
        count["calls"] += 1
        count["grads"] += int(probe.grad)
        return out

    all_draws, wall, samp, grads_warm, acc, div, steps = [], 0.0, 0.0, 0, [], 0, []
    for c in range(chains):
        marks: dict = {}

        def hook(kernel, params, stage, i) -> None:
            if stage == "Warmup" and i == warmup - 1:
                marks["t"], marks["grads"] = time.perf_counter(), count["grads"]
            elif stage == "Sample":
                marks["accept"] = float(kernel._mean_accept_prob)

        g0 = count["grads"]
        pyro.set_rng_seed(seed + 7919 * c + 1)
        kernel = NUTS(counted, jit_compile=jit, ignore_jit_warnings=True)  # Pyro's defaults otherwise
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, disable_progbar=True, hook_fn=hook)
        t0 = time.perf_counter()
        mcmc.run(*fargs)
        t1 = time.perf_counter()
        samples = mcmc.get_samples()
        x = torch.cat([site.transform.inv(samples[site.name].detach()).reshape(draws, -1)
                       for site in m.layout.values()], 1)
        all_draws.append(x)
        wall += t1 - t0
        samp += t1 - marks.get("t", t0)
        grads_warm += marks.get("grads", g0) - g0
        acc.append(marks.get("accept", float("nan")))
        div += len(mcmc.diagnostics().get("divergences", {}).get("chain 0", []))
        steps.append(float(kernel.step_size))
    return {
        "draws": torch.stack(all_draws), "wall_s": wall, "sampling_s": samp, "split": "hook",
        "grad_evals": count["grads"], "grad_evals_warmup": grads_warm, "potential_calls": count["calls"],
        "chains": chains, "per_chain_grads": count["grads"], "acceptance": statistics.fmean(acc),
        "divergences": div, "step_size": statistics.median(steps), "warmup_acceptance": None, "jit": jit,
    }


def analyse(run: dict, true_var: torch.Tensor | None) -> dict:
    """ESS, R-hat and moment checks of one run (the draws are dropped)."""
    from energyflow import diagnostics

    d = run.pop("draws")
    ess = torch.as_tensor(diagnostics.ess(d), dtype=DTYPE).reshape(-1)  # bulk, per coordinate
    run["ess_min"], run["ess_median"] = float(ess.min()), float(ess.median())
    run["ess_tail_min"] = float(diagnostics.ess(d, method="tail").min())
    names = run.pop("columns", None)
    if names is not None:  # constrained values of a Pyro model: which column is the slowest
        run["ess_min_column"] = names[int(ess.argmin())]
    run["rhat_max"] = float(diagnostics.rhat(d).max()) if d.shape[0] > 1 else None
    pooled = d.reshape(-1, d.shape[-1])
    run["mean"], run["sd"], run["ess"] = pooled.mean(0), pooled.std(0), ess  # dropped before the JSON
    if true_var is not None:
        r = pooled.var(0) / true_var
        run["var_ratio"] = {"min": float(r.min()), "median": float(r.median()), "max": float(r.max())}
    run["draws_per_chain"] = d.shape[1]
    return derive(run)


def derive(run: dict) -> dict:
    """The rates of one run from its raw counts (also re-derives a saved JSON's runs)."""
    per_chain = run["per_chain_grads"] / run["grad_evals"]  # 256 for a batched run, 1 for NUTS
    grads_s = run["grad_evals"] - run["grad_evals_warmup"]
    sequential = per_chain == 1 and run["chains"] > 1  # NUTS chains run one after another
    run["ess_per_s"] = run["ess_min"] / run["wall_s"]
    run["ess_per_s_sampling"] = run["ess_min"] / run["sampling_s"]
    run["ess_per_grad"] = run["ess_min"] / run["grad_evals"]
    run["ess_per_chain_grad"] = run["ess_min"] / run["per_chain_grads"]
    run["ess_per_chain_grad_sampling"] = run["ess_min"] / (grads_s * per_chain)
    # gradient evaluations per iteration of one chain (batched: of all chains at once)
    run["grads_per_draw"] = grads_s / run["draws_per_chain"] / (run["chains"] if sequential else 1)
    return run


def med(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------- pilot
def pilot(args) -> None:
    """energyflow HMC alone, a few num_leapfrog values, pilot seed 99: min-ESS per gradient."""
    warmup, draws = (100, 100) if args.quick else (args.hmc_warmup, args.hmc_draws)
    rows = []
    for name in args.models:
        energy, dim, true_var = make_model(name)
        field = ef.compile(energy)
        for L in (5, 10, 20, 40):
            r = ef_run("HMC", energy, field, dim, 99, warmup, draws, L)
            if name in PYRO_MODELS:  # the main run's ESS: on the constrained columns
                r["draws"], r["columns"] = constrained(energy, r["draws"])
            r = analyse(r, true_var)
            rows.append([name, L, r["wall_s"], r["ess_min"], r["ess_median"], r["grad_evals"], r["ess_per_grad"],
                         r["ess_per_s"], r["acceptance"], r["step_size"], r["divergences"]])
            print(rows[-1], flush=True)
    print(f"\n## HMC num_leapfrog pilot ({warmup} warm-up + {draws} draws, 256 chains, seed 99)\n")
    print(markdown_table(["model", "L", "wall s", "min ESS", "median ESS", "grad evals", "min ESS / grad eval",
                          "min ESS / s", "accept", "step", "div"], rows))


# --------------------------------------------------------------------------- main
METHODS = ("energyflow HMC", "energyflow MALA", "Pyro NUTS")


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(threads=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--hmc-warmup", type=int, default=None, help="HMC warm-up iterations (default 500)")
    parser.add_argument("--hmc-draws", type=int, default=None, help="HMC draws per chain (default 500)")
    parser.add_argument("--mala-warmup", type=int, default=None, help="MALA warm-up iterations (default 1000)")
    parser.add_argument("--mala-draws", type=int, default=None, help="MALA draws per chain (default 1000)")
    parser.add_argument("--nuts-warmup", type=int, default=None, help="NUTS warm-up iterations (default 500)")
    parser.add_argument("--nuts-draws", type=int, default=None, help="NUTS draws per chain (default 500)")
    parser.add_argument("--nuts-chains", type=int, default=None, help="sequential NUTS chains (default 4, quick 1)")
    parser.add_argument("--nuts-jit", action="store_true",
                        help="NUTS(jit_compile=True) on the Pyro models (default: Pyro's default, no JIT)")
    parser.add_argument("--no-merge", action="store_true",
                        help="with a subset of --models, do not carry the saved JSON's other models over")
    parser.add_argument("--pilot", action="store_true", help="only the HMC num_leapfrog pilot")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-derive the rates and re-print the tables of a saved result (no sampling)")
    args = parser.parse_args(argv)
    q = args.quick
    args.hmc_warmup = args.hmc_warmup or (100 if q else 500)
    args.hmc_draws = args.hmc_draws or (100 if q else 500)
    args.mala_warmup = args.mala_warmup or (200 if q else 1000)
    args.mala_draws = args.mala_draws or (200 if q else 1000)
    args.nuts_warmup = args.nuts_warmup or (100 if q else 500)
    args.nuts_draws = args.nuts_draws or (100 if q else 500)
    args.nuts_chains = args.nuts_chains or (1 if q else 4)
    repeats = args.repeats or (1 if q else 2)
    set_threads(args.threads)
    if args.pilot:
        pilot(args)
        return {}
    if args.from_json is not None:
        import json

        saved = json.loads(args.from_json.read_text())
        per = {"energyflow HMC": saved["config"]["hmc"][1], "energyflow MALA": saved["config"]["mala"][1],
               "Pyro NUTS": saved["config"]["nuts"][1]}
        for runs in saved["runs"].values():  # results written before draws_per_chain was stored
            for m, rs in runs.items():
                for r in rs:
                    r.setdefault("draws_per_chain", per[m])
        results = {n: {m: [derive(r) for r in rs] for m, rs in runs.items()} for n, runs in saved["runs"].items()}
        meta = {k: saved[k] for k in ("quick", "repeats", "config", "total_s", "env")}
        if "merged" in saved:
            meta["merged"] = saved["merged"]
        meta["env"]["rederived"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return report(results, meta, write=not args.no_json)

    config = {"hmc": [args.hmc_warmup, args.hmc_draws], "mala": [args.mala_warmup, args.mala_draws],
              "nuts": [args.nuts_warmup, args.nuts_draws], "nuts_chains": args.nuts_chains}
    carried = {} if args.no_json or args.no_merge or set(args.models) == set(MODELS) else \
        carry_over(args.models, config, repeats, q)

    results: dict[str, dict[str, list[dict]]] = {}
    t_start = time.perf_counter()
    for name in args.models:
        energy, dim, true_var = make_model(name)
        field = ef.compile(energy)
        L = LEAPFROG[name]
        pyro_model = name in PYRO_MODELS
        exact = exact_posterior(name) if name in CONJUGATE else None

        def nuts(seed: int, warmup: int, draws: int, chains: int) -> dict:
            if pyro_model:
                return nuts_model_run(name, energy, seed, warmup, draws, chains, jit=args.nuts_jit)
            return nuts_run(energy, dim, seed, warmup, draws, chains)

        # untimed warm-up of every code path (allocations, lazy imports)
        ef_run("HMC", energy, field, dim, 12345, 20, 5, L)
        ef_run("MALA", energy, field, dim, 12345, 20, 5, L)
        nuts(12345, 10, 5, 1)
        runs: dict[str, list[dict]] = {m: [] for m in METHODS}

        def make(method: str):
            def fn() -> None:
                r = len(runs[method])
                seed = 1000 * (r + 1)
                if method == "energyflow HMC":
                    out = ef_run("HMC", energy, field, dim, seed, args.hmc_warmup, args.hmc_draws, L)
                elif method == "energyflow MALA":
                    out = ef_run("MALA", energy, field, dim, seed, args.mala_warmup, args.mala_draws, L)
                else:
                    out = nuts(seed, args.nuts_warmup, args.nuts_draws, args.nuts_chains)
                if pyro_model:  # ESS and checks on the constrained values (outside the timers)
                    out["draws"], out["columns"] = constrained(energy, out["draws"])
                names = out.get("columns")
                out["seed"] = seed
                res = analyse(out, true_var)  # outside the run's own timer
                if name in CONJUGATE:
                    res.update(exact_check(res, names, exact))
                runs[method].append(res)
                print(f"  {name} {method} seed {seed}: {out['wall_s']:.1f} s, min ESS {out['ess_min']:.0f}",
                      flush=True)
            return fn

        time_interleaved({m: make(m) for m in METHODS}, repeats=repeats, warmup=0)
        # cross-check of the posterior means against NUTS's pooled draws
        ref = runs["Pyro NUTS"]
        for m in METHODS:
            for i, r in enumerate(runs[m]):
                ref_r = ref[i % len(ref)]
                r["max_abs_mean_diff_over_sd_vs_nuts"] = float(((r["mean"] - ref_r["mean"]).abs() / ref_r["sd"]).max())
        results[name] = runs
    total_s = time.perf_counter() - t_start
    for runs in results.values():
        for rs in runs.values():
            for r in rs:
                r.pop("mean"), r.pop("sd"), r.pop("ess")
    env = env_info(torch.get_num_threads())
    try:
        import pyro
        import sklearn
        env.update({"pyro": pyro.__version__, "sklearn": sklearn.__version__})
    except ImportError:
        pass
    env["nuts_jit"] = args.nuts_jit
    meta = {"quick": q, "repeats": repeats, "total_s": total_s, "env": env, "config": config}
    if carried:
        merged = carried.pop("_merged")
        now = {"models": list(args.models), "total_s": total_s, "env": env}
        merged["origin"].update({n: now for n in args.models})
        meta["merged"] = merged  # meta["total_s"] stays this run's time
        order = [n for n in MODELS if n in results or n in carried]
        results = {n: results[n] if n in results else carried[n] for n in order}
    return report(results, meta, write=not args.no_json)


def carry_over(models: list[str], config: dict, repeats: int, quick: bool) -> dict:
    """The saved JSON's runs of the models not being re-run, re-derived, if their settings
    match this run's (else stop: merging would mix settings under one header)."""
    import json

    path = RESULTS_DIR / f"{NAME}.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    keep = [n for n in saved["runs"] if n not in models]
    if not keep:
        return {}
    if saved["config"] != config or saved["repeats"] != repeats or saved["quick"] != quick:
        raise SystemExit(f"{path}: its settings ({saved['config']}, repeats {saved['repeats']}, quick "
                         f"{saved['quick']}) differ from this run's ({config}, repeats {repeats}, quick {quick}); "
                         f"merging would keep {keep} under the wrong header: use --no-merge or --no-json")
    per = {"energyflow HMC": config["hmc"][1], "energyflow MALA": config["mala"][1], "Pyro NUTS": config["nuts"][1]}
    out = {}
    for n in keep:
        for m, rs in saved["runs"][n].items():
            for r in rs:
                r.setdefault("draws_per_chain", per[m])
        out[n] = {m: [derive(r) for r in rs] for m, rs in saved["runs"][n].items()}
    # where each carried model's numbers come from (kept through repeated merges)
    origin = saved.get("merged", {}).get("origin", {})
    whole = {"models": list(saved["runs"]), "total_s": saved["total_s"], "env": saved["env"]}
    out["_merged"] = {"origin": {n: origin.get(n, whole) for n in keep}}
    return out


def report(results: dict[str, dict[str, list[dict]]], meta: dict, write: bool = True) -> dict:
    """Prints the tables of the runs' medians; writes the JSON."""
    cfg_, repeats = meta["config"], meta["repeats"]
    hw, hd = cfg_["hmc"]
    mw, md = cfg_["mala"]
    nw, nd = cfg_["nuts"]
    threads = meta["env"]["torch_threads"]

    # ---- tables
    config = {
        "energyflow HMC": f"256 chains, {hw}+{hd}, diag, L=%d",
        "energyflow MALA": f"256 chains, {mw}+{md}, diag",
        "Pyro NUTS": f"{cfg_['nuts_chains']} x 1 chain, {nw}+{nd}, diag",
    }
    print(f"\n## Sampler efficiency (float64, CPU, {threads} thread(s), torch {torch.__version__}; "
          f"median of {repeats} repeat(s), methods interleaved)\n")
    head = ["model", "method", "config", "wall s (total)", "wall s (sampling)", "min bulk ESS", "median bulk ESS",
            "min ESS / s", "min ESS / s (sampling)", "grad evals", "per-chain grads", "min ESS / grad eval",
            "min ESS / per-chain grad", "accept", "div", "step"]
    rows, ratio_rows, check_rows, summary = [], [], [], {}
    for name, runs in results.items():
        summary[name] = {}
        for m in METHODS:
            rs = runs[m]
            s = {k: med(rs, k) for k in ("wall_s", "sampling_s", "ess_min", "ess_median", "ess_tail_min", "ess_per_s",
                                         "ess_per_s_sampling", "grad_evals", "per_chain_grads", "ess_per_grad",
                                         "ess_per_chain_grad", "ess_per_chain_grad_sampling", "acceptance", "divergences", "step_size",
                                         "rhat_max", "grads_per_draw", "max_abs_mean_diff_over_sd_vs_nuts",
                                         "max_abs_mean_diff_over_sd_vs_exact", "max_abs_z_vs_exact")}
            if "var_ratio" in rs[0]:
                s["var_ratio_min"] = med([r["var_ratio"] for r in rs], "min")
                s["var_ratio_max"] = med([r["var_ratio"] for r in rs], "max")
            if "sd_ratio_vs_exact" in rs[0]:
                s["sd_ratio_vs_exact_min"] = med([r["sd_ratio_vs_exact"] for r in rs], "min")
                s["sd_ratio_vs_exact_max"] = med([r["sd_ratio_vs_exact"] for r in rs], "max")
            summary[name][m] = s
            cfg = config[m] % LEAPFROG[name] if "%d" in config[m] else config[m]
            rows.append([name, m, cfg, s["wall_s"], s["sampling_s"], s["ess_min"], s["ess_median"], s["ess_per_s"],
                         s["ess_per_s_sampling"], int(s["grad_evals"]), int(s["per_chain_grads"]), s["ess_per_grad"],
                         s["ess_per_chain_grad"], s["acceptance"], s["divergences"], s["step_size"]])
            vr = (f"{s['var_ratio_min']:.3f} .. {s['var_ratio_max']:.3f}" if "var_ratio_min" in s else "")
            ex = s["max_abs_mean_diff_over_sd_vs_exact"]
            sr = (f"{s['sd_ratio_vs_exact_min']:.3f} .. {s['sd_ratio_vs_exact_max']:.3f}"
                  if "sd_ratio_vs_exact_min" in s else "")
            check_rows.append([name, m, "" if s["rhat_max"] is None else s["rhat_max"],
                               "" if s["ess_tail_min"] is None else s["ess_tail_min"], vr,
                               s["max_abs_mean_diff_over_sd_vs_nuts"], "" if ex is None else ex,
                               "" if ex is None else s["max_abs_z_vs_exact"], sr, s["grads_per_draw"]])
        nuts = summary[name]["Pyro NUTS"]
        for m in METHODS[:2]:
            e = summary[name][m]
            r_tot = e["ess_per_s"] / nuts["ess_per_s"]
            r_samp = e["ess_per_s_sampling"] / nuts["ess_per_s_sampling"]
            r_grad = e["ess_per_chain_grad"] / nuts["ess_per_chain_grad"]
            r_grad_s = e["ess_per_chain_grad_sampling"] / nuts["ess_per_chain_grad_sampling"]
            e["ratio_vs_nuts"] = {"ess_per_s": r_tot, "ess_per_s_sampling": r_samp, "ess_per_chain_grad": r_grad,
                                  "ess_per_chain_grad_sampling": r_grad_s}
            ratio_rows.append([name, m, r_tot, r_samp, r_grad, r_grad_s, "yes" if r_tot >= GOAL else "NO"])
    print(markdown_table(head, rows))
    print("\n## energyflow / Pyro NUTS\n")
    print(markdown_table(["model", "method", "ESS/s ratio (total)", "ESS/s ratio (sampling)",
                          "ESS per per-chain gradient ratio (total)",
                          "ESS per per-chain gradient ratio (sampling)", f">= {GOAL:g}x (total ESS/s)"], ratio_rows))
    print("\n## Checks\n")
    print(markdown_table(["model", "method", "max split R-hat", "min tail ESS", "var / true var (min .. max)",
                          "max |mean - NUTS mean| / sd", "max |mean - exact| / exact sd",
                          "max |mean - exact| / MC se", "sd / exact sd (min .. max)",
                          "grad evals per iteration (sampling)"], check_rows))
    print(f"\ntotal {meta['total_s']:.0f} s")

    payload = {
        "name": NAME, "quick": meta["quick"], "repeats": repeats, "chains": CHAINS, "leapfrog": LEAPFROG,
        "config": cfg_, "goal_ess_per_s_ratio": GOAL, "summary": summary, "runs": results,
        "total_s": meta["total_s"], "env": meta["env"],
    }
    if "merged" in meta:
        payload["merged"] = meta["merged"]
    if write:
        print(f"wrote {write_result(NAME, payload)}")
    return payload


if __name__ == "__main__":
    main()
