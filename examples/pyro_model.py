"""A Pyro model as it is always written, sampled by energyflow: eight schools.

`ef.model` maps every latent site to unconstrained coordinates (tau > 0 through exp,
with its log-Jacobian), runs the model once for all chains (an outer plate), and the
result is an energy like any other: compile it, add terms, sample it with adapted HMC.

Run: python examples/pyro_model.py
"""

import pyro
import pyro.distributions as dist
import torch

import energyflow as ef

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
x0 = model.init(512, torch.Generator().manual_seed(0))  # Stan's uniform(-2, 2)
out = ef.HMC(num_leapfrog=8, num_warmup=300, num_steps=200, mass_matrix="diag").run(
    ef.compile(model), x0, generator=torch.Generator().manual_seed(1))
draws = model.constrain(out.samples)
print(f"acceptance {out.mean_acceptance:.2f}, divergences {out.num_divergences}, "
      f"step size {out.info['step_size']:.3f}, chains restarted in warm-up {out.info['num_restarted']}")
for name in ("mu", "tau"):
    print(f"{name:>5}: mean {draws[name].mean():6.2f}  sd {draws[name].std():5.2f}")
print("theta:", " ".join(f"{v:5.1f}" for v in draws["theta"].mean(0)))
