"""The same field, several samplers (fixed and adapted): accuracy and cost on a correlated Gaussian.

Run: python examples/compare_samplers.py
"""

import time

import torch

import energyflow as ef

torch.set_default_dtype(torch.float64)
cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
field = ef.compile(ef.GaussianPotential(torch.tensor([1.0, -1.0]), cov))
x0 = torch.zeros(2000, 2)

samplers = {
    "Langevin (Euler)": ef.Langevin(step_size=0.05, num_steps=400, schedule=1.0),
    "Langevin (Heun)": ef.Langevin(step_size=0.05, num_steps=400, schedule=1.0, method="heun"),
    "MALA": ef.MALA(step_size=0.1, num_steps=400),
    "HMC": ef.HMC(step_size=0.2, num_leapfrog=8, num_steps=50),
    # Stan-style warm-up: step size by dual averaging, dense mass matrix from all chains.
    "MALA (adapted, dense)": ef.MALA(num_warmup=200, num_steps=200, mass_matrix="dense"),
    "HMC (adapted, dense)": ef.HMC(num_leapfrog=4, num_warmup=150, num_steps=50, mass_matrix="dense"),
    "gradient flow (mode)": ef.GradientFlow(step_size=0.05, num_steps=400),
}
print(f"{'sampler':<22} {'mean error':>10} {'cov error':>10} {'grad evals':>10} {'accept':>7} {'seconds':>8}")
for name, sampler in samplers.items():
    t0 = time.perf_counter()
    out = sampler.run(field, x0, generator=torch.Generator().manual_seed(0))
    dt = time.perf_counter() - t0
    mean_err = (out.samples.mean(0) - torch.tensor([1.0, -1.0])).norm()
    cov_err = (torch.cov(out.samples.T) - cov).norm()
    acc = "-" if out.mean_acceptance is None else f"{out.mean_acceptance:.2f}"
    print(f"{name:<22} {mean_err:>10.3f} {cov_err:>10.3f} {out.num_grad_evals:>10d} {acc:>7} {dt:>8.2f}")

nuts = ef.PyroNUTS(num_samples=300, warmup_steps=200)
out = nuts.run(field, torch.zeros(1, 2), generator=torch.Generator().manual_seed(0))
draws = out.trajectory[:, 0]
print(f"{'Pyro NUTS (1 chain)':<22} {(draws.mean(0) - torch.tensor([1.0, -1.0])).norm():>10.3f} "
      f"{(torch.cov(draws.T) - cov).norm():>10.3f} {out.num_grad_evals:>10d} {out.mean_acceptance:>7.2f}")
