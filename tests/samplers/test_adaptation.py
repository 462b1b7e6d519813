"""Warm-up adaptation: Stan's windows, dual averaging, mass-matrix estimates, and
adapted MALA/HMC on an ill-conditioned 100-D Gaussian and a strongly correlated 2-D one.

Statistical design as in test_mala.py: many independent chains from one start, the
final states treated as independent draws, Bonferroni z-tests on mean and covariance
(family-wise false alarm 1e-4, ``helpers.gaussian_moments_agree``); each target also
has a negative control (the same budget without the adaptation under test) that must
fail.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import energyflow as ef
from energyflow.errors import InvalidValueError
from energyflow.samplers import hmc
from energyflow.samplers import kernel as K
from energyflow.samplers.adaptation import ChainGroups, DualAveraging, Moments, stuck_chains, windows

F64 = torch.float64


# --- the pieces ----------------------------------------------------------------------------
@pytest.mark.parametrize("num_warmup, expected", [
    (1000, (75, [100, 150, 250, 450, 950])),  # Stan's default schedule for 1000 warm-up iterations
    (500, (75, [100, 150, 250, 450])),
    (150, (75, [100])),
    (100, (15, [90])),  # fewer than 150: 15 % / 75 % / 10 %
    (19, (19, [])),  # too short for windows: step size only
])
def test_windows_follow_stan(num_warmup, expected):
    assert windows(num_warmup) == expected


def test_dual_averaging_finds_the_target_of_a_known_acceptance_curve():
    # acceptance(h) = exp(-h) reaches 0.8 at h* = -log 0.8. Dual averaging's error decays
    # like 1/t (h_bar averages with weights 1/(t + t0)): measured acceptance at the
    # averaged step 0.7906 after 100 updates, 0.7953 after 500, 0.7977 after 2000.
    def run(n):
        da = DualAveraging.start(1.0)
        for _ in range(n):
            da = da.update(math.exp(-da.step_size), target=0.8)
        return abs(math.exp(-da.final_step_size) - 0.8)

    assert run(500) < 0.01
    assert run(2000) < run(500) < run(100)


@pytest.mark.parametrize("dense", [False, True])
def test_moments_match_the_pooled_sample_estimate(dense):
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(9, 5, 3, generator=g, dtype=F64) * torch.tensor([1.0, 2.0, 3.0], dtype=F64) + 5.0  # (T, B, D)
    m = Moments(5, 3, dense, torch.device("cpu"))
    for x in draws:
        m.add(x)
    keep = torch.tensor([True, False, True, True, False])
    for mask in (None, keep):
        pooled = (draws if mask is None else draws[:, mask]).reshape(-1, 3)
        n = pooled.shape[0]
        expected = torch.cov(pooled.T) if dense else pooled.var(0)
        shrunk = n / (n + 5.0) * expected + 1e-3 * 5.0 / (n + 5.0) * (torch.eye(3, dtype=F64) if dense else 1.0)
        assert m.pooled(mask)[0] == n
        assert torch.allclose(m.pooled(mask)[1], pooled.mean(0), atol=1e-12)
        assert torch.allclose(m.regularised(mask), shrunk, atol=1e-12)


@pytest.mark.parametrize("dense", [False, True])
def test_moments_within_groups_take_each_group_about_its_own_mean(dense):
    """Two groups of chains whose draws sit 40 apart: the within-group estimate is the
    pooled variance of the draws about their group's mean (n - G degrees of freedom),
    whereas pooling about the grand mean adds the gap between the groups (~400)."""
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(9, 6, 3, generator=g, dtype=F64) * torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    draws = draws + 40.0 * labels.to(F64).reshape(1, -1, 1)
    m = Moments(6, 3, dense, torch.device("cpu"))
    for x in draws:
        m.add(x)
    keep = torch.tensor([True, True, False, True, True, True])
    for mask in (None, keep):
        use = torch.ones(6, dtype=torch.bool) if mask is None else mask
        parts = [draws[:, use & (labels == k)].reshape(-1, 3) for k in (0, 1)]
        centred = torch.cat([p - p.mean(0) for p in parts])
        n = centred.shape[0]
        expected = centred.T @ centred / (n - 2) if dense else (centred**2).sum(0) / (n - 2)
        eye = torch.eye(3, dtype=F64) if dense else 1.0
        shrunk = n / (n + 5.0) * expected + 1e-3 * 5.0 / (n + 5.0) * eye
        assert torch.allclose(m.regularised(mask, groups=labels), shrunk, atol=1e-12)
        diag = torch.diagonal(m.regularised(mask)) if dense else m.regularised(mask)
        assert bool((diag > 300.0).all())  # negative control: across groups


def test_chain_groups_partition_labels_and_refuse_bad_ones():
    groups = ChainGroups.of([5, -1, 5, 2], 4, torch.device("cpu"))
    assert groups.labels == [-1, 2, 5] and groups.index.tolist() == [2, 0, 2, 1]
    assert [m.tolist() for m in groups.members] == [[1], [3], [0, 2]]
    assert ChainGroups.of(None, 4, torch.device("cpu")) is None
    field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    bad_labels = [(torch.zeros(3, dtype=torch.long), r"shape \(4,\)"), (torch.zeros(4), "integer"),
                  (torch.zeros(4, dtype=torch.bool), "integer"), (torch.zeros(2, 2, dtype=torch.long), "shape"),
                  ("ab", "integer tensor")]
    for bad, match in bad_labels:
        for sampler in (ef.MALA(num_steps=1), ef.HMC(num_steps=1, num_leapfrog=1)):
            with pytest.raises(InvalidValueError, match=match):
                sampler.run(field, torch.zeros(4, 2), chain_groups=bad)


def test_stuck_chains_are_the_ones_that_neither_move_nor_fit():
    acc = torch.tensor([0.6, 0.0, 0.0, 0.5, 0.01])
    phi = torch.tensor([1.0, 50.0, 0.5, 2.0, float("inf")])
    # chain 1: no moves and far worse than the median; chain 2: no moves but at the mode
    # (a converged chain that happens to reject is not stuck); chain 4: non-finite.
    assert stuck_chains(acc, phi).tolist() == [False, True, False, False, True]


def test_per_chain_leapfrog_counts_stop_each_chain_at_its_own_count():
    field = ef.compile(ef.GaussianPotential(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64)))
    potential = K.field_potential(field, 1.0)
    state = K.init(torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(1)), potential)
    space = ef.Euclidean(3)

    def run(n):  # same seed: the same momenta and uniforms
        return hmc.kernel(state, potential, 0.3, n, torch.Generator().manual_seed(5), space=space)[0]

    mixed = run(torch.tensor([2, 4]))
    assert torch.allclose(mixed.position[0], run(2).position[0], atol=1e-12)
    assert torch.allclose(mixed.position[1], run(4).position[1], atol=1e-12)
    assert not torch.allclose(run(2).position[1], run(4).position[1])  # the counts do matter


def test_adapted_results_report_step_size_and_mass_and_count_every_evaluation():
    field = ef.compile(ef.GaussianPotential(torch.zeros(2, dtype=F64), torch.diag(torch.tensor([1.0, 9.0], dtype=F64))))
    out = ef.HMC(num_leapfrog=3, num_warmup=60, num_steps=5, mass_matrix="diag").run(
        field, torch.zeros(64, 2, dtype=F64), generator=torch.Generator().manual_seed(0))
    assert out.info["step_size"] != 0.1 and out.info["inverse_mass"].shape == (2,)
    assert out.info["num_grad_evals_warmup"] < out.num_grad_evals
    # One evaluation at the start, then the largest per-chain count of every iteration.
    assert out.num_grad_evals == 1 + out.info["num_grad_evals_warmup"] - 1 + out.info["num_integration_steps"]
    fixed = ef.HMC(num_leapfrog=3, num_steps=5, jitter=0.0).run(field, torch.zeros(4, 2, dtype=F64))
    assert fixed.num_grad_evals == 1 + 5 * 3  # jitter=0: exactly num_leapfrog per iteration


# --- adapted samplers on hard Gaussians ------------------------------------------------------
D = 100
SCALES = torch.logspace(0, 1.5, D, dtype=F64)  # standard deviations 1 .. 31.6: condition number 1000
NUM_CHAINS = 512


def _ill_conditioned():
    field = ef.compile(ef.GaussianPotential(torch.zeros(D, dtype=F64), torch.diag(SCALES**2)))
    x0 = torch.randn(NUM_CHAINS, D, dtype=F64, generator=torch.Generator().manual_seed(10))  # far too narrow a start
    return field, x0


ILL = {
    "mala": (lambda mass: ef.MALA(step_size=0.1, num_warmup=600, num_steps=300, mass_matrix=mass), 0.574),
    "hmc": (lambda mass: ef.HMC(step_size=0.1, num_leapfrog=8, num_warmup=300, num_steps=50, mass_matrix=mass), 0.8),
}


@pytest.mark.parametrize("name", sorted(ILL))
def test_adaptation_on_a_100d_gaussian_with_condition_number_1000(name, helpers):
    make, target = ILL[name]
    field, x0 = _ill_conditioned()
    out = make("diag").run(field, x0, generator=torch.Generator().manual_seed(0))
    # The mean acceptance over 512 chains and the sampling iterations is precise to ~0.01;
    # dual averaging's averaged iterate lands within 0.05 of the target (measured: 0.567-0.574, 0.79-0.82).
    assert abs(out.mean_acceptance - target) < 0.05
    ok, z, crit = helpers.gaussian_moments_agree(out.samples, torch.zeros(D, dtype=F64), torch.diag(SCALES**2))
    assert ok, f"moments off: max |z| = {z:.2f} > {crit:.2f}"
    # The adapted diagonal is the target's variance (window estimates from 512 chains: a few %).
    ratio = out.info["inverse_mass"] / SCALES**2
    assert float(ratio.min()) > 0.8 and float(ratio.max()) < 1.25
    assert out.num_divergences == 0


def test_ill_conditioned_negative_control_without_a_mass_matrix(helpers):
    """Step-size adaptation alone, same budget: MALA's step is set by the narrowest
    direction and the widest ones (sd 31.6) have not reached their variance."""
    make, _ = ILL["mala"]
    field, x0 = _ill_conditioned()
    out = make(None).run(field, x0, generator=torch.Generator().manual_seed(0))
    assert not helpers.gaussian_moments_agree(out.samples, torch.zeros(D, dtype=F64), torch.diag(SCALES**2))[0]


def test_step_size_negative_control_without_adaptation():
    """No warm-up: the initial step size keeps its own acceptance, far from the target."""
    field, x0 = _ill_conditioned()
    out = ef.HMC(step_size=0.01, num_leapfrog=8, num_steps=20).run(field, x0, generator=torch.Generator().manual_seed(0))
    assert abs(out.mean_acceptance - 0.8) > 0.1


RHO = 0.99
COV2 = torch.tensor([[1.0, RHO * 10.0], [RHO * 10.0, 100.0]], dtype=F64)  # sds 1 and 10, correlation 0.99
MEAN2 = torch.tensor([1.0, -2.0], dtype=F64)
CORRELATED = {
    "mala": (lambda mass: ef.MALA(step_size=0.1, num_warmup=300, num_steps=200, mass_matrix=mass), 0.574),
    "hmc": (lambda mass: ef.HMC(step_size=0.1, num_leapfrog=5, num_warmup=200, num_steps=50, mass_matrix=mass), 0.8),
}


def _correlated():
    field = ef.compile(ef.GaussianPotential(MEAN2, COV2))
    return field, torch.randn(1024, 2, dtype=F64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(CORRELATED))
def test_dense_adaptation_on_a_strongly_correlated_2d_gaussian(name, helpers):
    make, target = CORRELATED[name]
    field, x0 = _correlated()
    out = make("dense").run(field, x0, generator=torch.Generator().manual_seed(0))
    # In 2-D HMC's acceptance is not monotone in the step size near 2 pi / L; per-chain
    # leapfrog jitter smooths it (measured 0.82-0.83; a shared count gave 0.86-0.92).
    assert abs(out.mean_acceptance - target) < 0.05
    ok, z, crit = helpers.gaussian_moments_agree(out.samples, MEAN2, COV2)
    assert ok, f"moments off: max |z| = {z:.2f} > {crit:.2f}"
    assert torch.allclose(out.info["inverse_mass"], COV2, rtol=0.15, atol=0.3)


def test_correlated_negative_control_without_a_mass_matrix(helpers):
    make, _ = CORRELATED["mala"]
    field, x0 = _correlated()
    out = make(None).run(field, x0, generator=torch.Generator().manual_seed(0))
    assert not helpers.gaussian_moments_agree(out.samples, MEAN2, COV2)[0]


# --- refusals ------------------------------------------------------------------------------
class _Frobenius(ef.Energy):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return 0.5 * a.pow(2).sum((1, 2))


def test_mass_adaptation_needs_a_euclidean_space():
    field = ef.compile(_Frobenius(), space=ef.SymmetricMasked(num_nodes=3))
    with pytest.raises(InvalidValueError, match="mass-matrix adaptation needs"):
        ef.MALA(num_warmup=30, num_steps=2, mass_matrix="diag").run(field, torch.zeros(4, 3, 3))
    with pytest.raises(InvalidValueError, match="needs tensor states on a Euclidean space"):
        ef.HMC(inverse_mass=torch.ones(3, 3) * 2.0, num_steps=2).run(field, torch.zeros(4, 3, 3))
    # A scalar step size still adapts on the space.
    out = ef.MALA(num_warmup=30, num_steps=2).run(field, torch.zeros(64, 3, 3), generator=torch.Generator().manual_seed(0))
    assert out.info["step_size"] != 0.01


@pytest.mark.parametrize("kwargs", [{"mass_matrix": "full"}, {"num_warmup": -1}, {"target_accept": 1.0}])
def test_bad_adaptation_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ef.MALA(**kwargs)


def test_stranded_chains_in_a_minor_mode_are_restarted():
    """Mixture N(-15, 1) + e^-30 N(+15, 1) (unnormalised weights): the +15 mode holds a
    fraction e^-30 of the mass, yet chains started there keep accepting moves inside it
    (30 standard deviations from the other mode, far beyond a MALA step). Warm-up must
    move them; the negative control (no restarts) leaves them there."""
    from energyflow.samplers import adaptation

    class Minor(ef.Energy):
        def forward(self, x):
            a = -0.5 * (x[:, 0] + 15.0) ** 2
            b = -0.5 * (x[:, 0] - 15.0) ** 2 - 30.0
            return -torch.logaddexp(a, b)

    field = ef.compile(Minor())
    x0 = torch.cat([torch.full((48, 1), -15.0), torch.full((16, 1), 15.0)]).to(F64)
    sampler = ef.MALA(num_warmup=200, num_steps=50)
    out = sampler.run(field, x0, generator=torch.Generator().manual_seed(0))
    assert out.info["num_restarted"] >= 16 and bool((out.samples[:, 0] < 0).all())
    original = adaptation.stuck_chains
    try:
        adaptation.stuck_chains = lambda acc, pot: original(acc, pot, threshold=0.0, gap=float("inf"))
        control = sampler.run(field, x0, generator=torch.Generator().manual_seed(0))
    finally:
        adaptation.stuck_chains = original
    assert int((control.samples[:, 0] > 0).sum()) == 16  # all 16 are still in the minor mode


class _TwoTargets(ef.Energy):
    """Chain b targets its own group's mixture N(c, 1) + e^-30 N(c + 30, 1), c = 0 for
    group 0 and 40 for group 1, whose potential also sits 100 nats higher: two posteriors
    in one batch, as the chains of two measurements of an inverse problem are."""

    def __init__(self, labels: Tensor) -> None:
        super().__init__()
        self.centre = 40.0 * labels.to(F64)
        self.offset = 100.0 * labels.to(F64)

    def forward(self, x):
        z = x[:, 0] - self.centre
        rest = 0.5 * (x[:, 1:] ** 2).sum(1)
        return -torch.logaddexp(-0.5 * z**2, -0.5 * (z - 30.0) ** 2 - 30.0) + self.offset + rest


@pytest.mark.parametrize("sampler", [
    ef.MALA(num_warmup=200, num_samples=50, mass_matrix="diag"),
    ef.HMC(num_warmup=200, num_samples=20, num_leapfrog=4, mass_matrix="diag"),
], ids=["mala", "hmc"])
def test_warmup_restarts_stay_within_chain_groups(sampler):
    """24 chains of group 0 (2 of them started in its minor mode at +30) and 8 of group 1
    (1 in its minor mode at +70). With chain_groups every restart copies a chain of the
    same group (group 1's chains sit 100 nats above the batch's median, yet are judged
    against their own), the minor-mode chains of both groups are restarted, counted per
    group, and no chain ever holds the other group's state (x[0] > 20 marks group 1's).
    The mass matrix is the within-group variance (~1 for x[0]), not the 40-wide gap.
    Negative control, chain_groups=None: group 1's chains are 'stranded' and copied onto
    group 0's states, the old behaviour (one target for the batch); for HMC the shared step
    size then collapses to ~2e-16, the blind-denoising failure."""
    import warnings

    from energyflow.diagnostics import EnergyflowWarning
    from energyflow.samplers import adaptation

    labels = torch.tensor([0] * 24 + [1] * 8)
    start = torch.zeros(32, 2, dtype=F64)
    start[:, 0] = 40.0 * labels.to(F64)
    start[[5, 17], 0] = 30.0  # group 0's minor mode
    start[27, 0] = 70.0  # group 1's minor mode
    field = ef.compile(_TwoTargets(labels))
    moves: list[Tensor] = []  # which group's state each chain holds after every restart
    original = adaptation.restart

    def spy(state, stuck, generator, groups=None):
        out = original(state, stuck, generator, groups)
        moves.append((out.position[:, 0] > 20.0).long())
        return out

    adaptation.restart = spy
    try:
        out = sampler.run(field, start, generator=torch.Generator().manual_seed(0), chain_groups=labels)
        moved_grouped, moves[:] = list(moves), []
        with warnings.catch_warnings():  # HMC's control also collapses its step size (StepSizeWarning)
            warnings.simplefilter("ignore", EnergyflowWarning)
            control = sampler.run(field, start, generator=torch.Generator().manual_seed(0))
        moved_control = list(moves)
    finally:
        adaptation.restart = original
    assert moved_grouped and all(torch.equal(m, labels) for m in moved_grouped)
    kept = out.draws[..., 0]  # (chains, draws)
    assert bool(((kept > 20.0).long() == labels[:, None]).all())
    assert bool(((kept - 40.0 * labels[:, None]).abs() < 8.0).all())  # every chain left its minor mode
    per_group = out.info["num_restarted_per_group"]
    assert per_group == {0: 2, 1: 1} and out.info["num_restarted"] == 3  # the minor-mode chains, only
    assert 0.3 < float(out.info["inverse_mass"][0]) < 3.0
    assert float(out.mean_acceptance) > 0.3
    # Negative control: without groups the batch is one target; chains of group 1 land on group 0's states.
    assert "num_restarted_per_group" not in control.info
    assert any(not torch.equal(m, labels) for m in moved_control)
    assert int((control.samples[labels == 1, 0] < 20.0).sum()) == 8  # all of group 1 moved onto group 0
    assert control.info["num_restarted"] > 8
    if isinstance(sampler, ef.HMC):
        assert control.info["step_size"] < 1e-6
