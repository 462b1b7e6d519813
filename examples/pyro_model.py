"""A Pyro model as it is always written, sampled by energyflow: eight schools.

`ef.model` maps every latent site to unconstrained coordinates (tau > 0 through exp,
with its log-Jacobian), runs the model once for all chains (an outer plate), and the
result is an energy like any other: compile it, add terms, sample it with adapted HMC.
With `num_samples` the sampler keeps its post-warm-up draws, `(chains, draws, ...)`, so
the result has what a Stan or NumPyro user checks first: ArviZ's summary (R-hat, bulk
and tail ESS, MCSE), warnings, and trace and rank plots.

Run: python examples/pyro_model.py   (about 30 s on one CPU thread)
"""

from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import energyflow as ef
from energyflow import diagnostics
from energyflow.plotting import save_figure

torch.set_default_dtype(torch.float64)
y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(y, sigma):  # non-centred
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


model = ef.model(eight_schools, y, sigma)
print({name: site.shape for name, site in model.layout.items()}, "-> state of", model.dim, "coordinates")
x0 = model.init(64, torch.Generator().manual_seed(0))  # 64 chains from Stan's uniform(-2, 2)
# 500 warm-up iterations, then 1000 kept draws per chain (7 MB). R-hat > 1.01, ESS < 400, divergences
# after warm-up and a collapsed step size are raised as warnings: eight schools usually has a few
# divergent transitions out of 64,000 even non-centred, and 200 draws per chain leave R-hat at 1.02.
out = ef.HMC(num_leapfrog=8, num_warmup=500, num_samples=1000, mass_matrix="diag").run(
    ef.compile(model), x0, generator=torch.Generator().manual_seed(1))
print(f"acceptance {out.mean_acceptance:.2f}, divergences {out.num_divergences}, "
      f"step size {out.info['step_size']:.3f}, chains restarted in warm-up {out.info['num_restarted']}")
print("kept draws:", tuple(out.draws.shape), "(chains, draws, unconstrained coordinates)")

print(out.summary(var_names=["mu", "tau", "theta"]).to_string())  # ArviZ's table, constrained sites
idata = out.to_arviz()  # posterior, unconstrained_posterior (log tau), sample_stats, observed_data
print("InferenceData groups:", idata.groups())
# trace and rank plots of the first 4 chains (64 make the rank panel unreadable)
fig = diagnostics.plot_trace(idata.isel(chain=slice(0, 4)), var_names=["mu", "tau"],
                             title="eight schools: 4 of the 64 chains x 1000 draws")
path = save_figure(fig, Path("runs/example_pyro_model/trace.png"))
print("trace and rank plots:", path)
