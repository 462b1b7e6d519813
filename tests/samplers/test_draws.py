"""Kept draws (issue 15): ``num_samples`` and ``thin`` on MALA and HMC, ``(chains, draws, ...)``
per leaf, per-draw sample stats, the memory bound and the sampler's own warnings.

The draws are checked exactly against the recorded trajectory of the same seeded run
(``record_every=1`` keeps every post-warm-up state): the buffer must hold the same states,
no statistics involved. The memory figure of the docs (1,000 draws of 256 chains of a
100-D float64 state: 212,232,000 bytes) is checked exactly for the buffers and, in a fresh
process, against the growth of the peak resident memory.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings

import attrs
import pytest
import torch
from graph_helpers import Quadratic, graph_space, random_masks

import energyflow as ef
from energyflow.diagnostics import DivergenceWarning, EnergyflowWarning, StepSizeWarning
from energyflow.errors import InvalidValueError
from energyflow.samplers import draws as D

STATS = {"acceptance_rate", "diverging", "energy", "lp", "step_size", "n_steps"}


def _gaussian(d: int = 3, dtype=torch.float32):
    return ef.compile(ef.GaussianPotential(torch.zeros(d, dtype=dtype), torch.eye(d, dtype=dtype)))


SAMPLERS = {
    "mala": lambda **kw: ef.MALA(step_size=0.3, num_warmup=30, temperature=0.7, **kw),
    "hmc": lambda **kw: ef.HMC(step_size=0.3, num_leapfrog=4, num_warmup=30, temperature=0.7, **kw),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("thin", [1, 3])
def test_kept_draws_are_the_thinned_post_warmup_states(name, thin):
    sampler = SAMPLERS[name](num_samples=20, thin=thin)
    assert sampler.num_steps == 20  # num_samples is the number of post-warm-up iterations
    out = sampler.run(_gaussian(), torch.zeros(6, 3), generator=torch.Generator().manual_seed(0), record_every=1)
    kept = 20 // thin
    assert out.draws.shape == (6, kept, 3)
    traj = out.trajectory[1:]  # (20, 6, 3): every post-warm-up state (frame 0 is the start)
    assert torch.equal(out.draws, traj[thin - 1::thin][:kept].transpose(0, 1))
    assert set(out.sample_stats) == STATS
    for k, v in out.sample_stats.items():
        assert v.shape == (6, kept), k
    assert out.sample_stats["diverging"].dtype == torch.bool
    # lp is log pi = -U / T at the kept state, up to a constant (the potential's log-normaliser);
    # the step size is reported in the sampler's units
    T = sampler.temperature
    last = out.draws[:, -1]
    offset = out.sample_stats["lp"][:, -1] + 0.5 * (last * last).sum(1) / T
    assert float(offset.max() - offset.min()) < 1e-5
    assert torch.allclose(out.sample_stats["step_size"], torch.full((6, kept), out.info["step_size"],
                                                                    dtype=torch.float64))
    acc = out.sample_stats["acceptance_rate"]
    assert bool(((acc >= 0) & (acc <= 1)).all())


def test_hmc_reports_each_chains_own_leapfrog_count():
    out = ef.HMC(step_size=0.3, num_leapfrog=10, jitter=0.5, num_samples=30).run(
        _gaussian(), torch.zeros(64, 3), generator=torch.Generator().manual_seed(0))
    n = out.sample_stats["n_steps"]
    assert int(n.min()) >= 5 and int(n.max()) <= 15
    assert len(torch.unique(n)) > 3  # per chain, not the batch's maximum
    mala = ef.MALA(step_size=0.3, num_samples=5).run(_gaussian(), torch.zeros(4, 3),
                                                     generator=torch.Generator().manual_seed(0))
    assert bool((mala.sample_stats["n_steps"] == 1).all())


def test_pytree_states_keep_draws_per_leaf():
    g = torch.Generator().manual_seed(0)
    B = 8
    x0 = {"x": torch.zeros(B, 4, 2), "adj": torch.zeros(B, 4, 4), "mask": random_masks(B, g)}
    out = ef.MALA(step_size=0.2, num_samples=10).run(ef.compile(Quadratic(), space=graph_space()), x0,
                                                     generator=torch.Generator().manual_seed(1))
    assert set(out.draws) == {"x", "adj", "mask"}
    assert out.draws["x"].shape == (B, 10, 4, 2) and out.draws["adj"].shape == (B, 10, 4, 4)
    assert torch.equal(out.draws["mask"], x0["mask"].unsqueeze(1).expand(B, 10, 4))  # carried unchanged
    assert torch.equal(out.draws["x"][:, -1], out.samples["x"])


def test_without_num_samples_nothing_is_kept():
    out = ef.MALA(step_size=0.3, num_steps=5).run(_gaussian(), torch.zeros(4, 3),
                                                  generator=torch.Generator().manual_seed(0))
    assert out.draws is None and out.sample_stats == {}


@pytest.mark.parametrize("cls", [ef.MALA, ef.HMC])
def test_num_samples_and_thin_are_validated(cls):
    with pytest.raises(InvalidValueError, match="thin"):
        cls(thin=2)  # thinning what is not kept
    with pytest.raises(InvalidValueError, match="thin"):
        cls(num_samples=3, thin=4)
    with pytest.raises(InvalidValueError, match="num_samples"):
        cls(num_samples=0)
    with pytest.raises(InvalidValueError, match="num_samples"):
        cls(num_samples=2.5)
    s = attrs.evolve(cls(num_samples=10), num_samples=40)  # num_samples wins over the evolved num_steps
    assert s.num_steps == 40 and cls(num_samples="12").num_samples == 12


def test_bytes_per_draw_is_what_the_buffers_take():
    x = torch.zeros(256, 100, dtype=torch.float64)
    assert D.bytes_per_draw(x) == 256 * 100 * 8 + 256 * (3 * 8 + 1 + 4) + 8
    buf = D.DrawBuffer(x, num_samples=50, thin=2, max_bytes=10**9)
    taken = sum(t.untyped_storage().nbytes() for t in [buf._leaves[0], buf._step_size, *buf.stats.values()])
    assert taken == buf.nbytes == 25 * D.bytes_per_draw(x)


def test_a_request_that_does_not_fit_is_refused_before_sampling(monkeypatch):
    field = _gaussian(100, torch.float64)
    monkeypatch.setattr(D, "available_memory", lambda device: 300 * 10**6)  # 300 MB free: 150 MB allowed
    evals = field.num_grad_evals
    with pytest.raises(D.DrawsMemoryError, match=r"212\.2 MB.*more than half of the 300\.0 MB free") as err:
        ef.HMC(num_warmup=10_000, num_samples=1000).run(field, torch.zeros(256, 100, dtype=torch.float64))
    assert err.value.required == 212_232_000 and isinstance(err.value, MemoryError)
    assert field.num_grad_evals - evals <= 1  # the initial state's evaluation only: no warm-up ran
    with pytest.raises(D.DrawsMemoryError, match="the limit of 1.0 kB"):
        D.DrawBuffer(torch.zeros(4, 2), num_samples=100, max_bytes=1000)


def test_memory_figure_of_1000_draws_256_chains_100_dims():
    """The documented figure (212.2 MB, float64) bounds the peak memory growth of the run."""
    code = textwrap.dedent("""
        import resource, torch
        torch.set_num_threads(1)
        import energyflow as ef
        D, B, S = 100, 256, 1000
        field = ef.compile(ef.GaussianPotential(torch.zeros(D, dtype=torch.float64), torch.eye(D, dtype=torch.float64)))
        x0 = torch.randn(B, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        sampler = ef.MALA(step_size=0.5, num_samples=S)
        ef.MALA(step_size=0.5, num_samples=10).run(field, x0, generator=torch.Generator().manual_seed(1))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = sampler.run(field, x0, generator=torch.Generator().manual_seed(1))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        kept = out.draws.untyped_storage().nbytes() + sum(v.untyped_storage().nbytes() for v in out.sample_stats.values())
        print(kept, after - before)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert res.returncode == 0, res.stderr
    kept, growth = map(int, res.stdout.split())
    figure = 212_232_000  # energyflow.samplers.draws' docstring: 1000 * (256 * 100 * 8 + 256 * 29 + 8)
    assert kept == figure
    # The rest of a step's memory is a few (256, 100) temporaries (200 kB each): 5 % is generous.
    assert growth <= 1.05 * figure, growth


def test_divergences_after_warmup_are_warned_of():
    # A fixed step of 3 on a unit Gaussian: the leapfrog is unstable (limit 2), energy errors explode.
    with pytest.warns(DivergenceWarning, match=r"HMC: \d+ of 640 .* transitions after warm-up were divergent"):
        out = ef.HMC(step_size=3.0, num_leapfrog=20, jitter=0.0, max_energy_error=100.0, num_samples=20).run(
            _gaussian(dtype=torch.float64), torch.ones(32, 3, dtype=torch.float64),
            generator=torch.Generator().manual_seed(0))
    assert out.num_divergences == int(out.sample_stats["diverging"].sum()) > 0


class Lattice(ef.Energy):
    """``1e16 (x - round x)^2``: finite-curvature only within ~1e-8 of the integers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e16 * ((x - torch.round(x)) ** 2).sum(-1)


def test_a_collapsed_step_size_is_warned_of_and_a_healthy_run_warns_nothing():
    # Chains at integers of the lattice reject every proposal larger than ~1e-8: dual averaging
    # drives the step size to ~1e-16 and beyond, far below 1e-3 x the first search's result
    # (the search halves at most 20 times from 1e-3, to ~1e-9).
    field = ef.compile(Lattice())
    with pytest.warns(StepSizeWarning, match="collapsed during adaptation"):
        out = ef.MALA(step_size=1e-3, num_warmup=100, num_samples=10).run(
            field, torch.zeros(16, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert out.info["step_size"] < 1e-3 * out.info["step_size_initial"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnergyflowWarning)  # negative control: a Gaussian warns of nothing
        out = ef.HMC(num_leapfrog=5, num_warmup=100, num_samples=50).run(
            _gaussian(), torch.zeros(16, 3), generator=torch.Generator().manual_seed(0))
    assert out.num_divergences == 0 and math.isfinite(out.info["step_size"])


def test_pyro_nuts_keeps_its_draws_with_nuts_stats():
    out = ef.PyroNUTS(num_samples=30, warmup_steps=30).run(_gaussian(2), torch.zeros(4, 2),
                                                          generator=torch.Generator().manual_seed(0))
    assert out.draws.shape == (4, 30, 2) and torch.equal(out.draws, out.trajectory.transpose(0, 1))
    assert set(out.sample_stats) == {"acceptance_rate", "step_size", "n_steps", "tree_depth", "diverging", "lp"}
    n, depth = out.sample_stats["n_steps"], out.sample_stats["tree_depth"]
    # a tree of depth d has between 2^(d-1) and 2^d - 1 leapfrog steps
    assert bool(((2 ** (depth - 1) <= n) & (n <= 2**depth - 1)).all())
    # the per-draw acceptance probabilities average to what Pyro's running mean reports
    assert abs(float(out.sample_stats["acceptance_rate"][0].mean()) - out.mean_acceptance) < 1e-5
