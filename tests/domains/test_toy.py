"""Toy 2-D data sets and the toy domain."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from energyflow.domains import Domain
from energyflow.domains.toy import (
    DATASETS,
    EIGHT_GAUSSIANS_RADIUS,
    RINGS_RADII,
    ToyDomain,
    eight_gaussians,
    eight_gaussians_centers,
    get_dataset,
    moons,
    rings,
    sample_dataset,
    spirals,
)
from energyflow.registry import DOMAINS


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_shape_dtype_range(name):
    x = DATASETS[name](2000, gen(0))
    assert x.shape == (2000, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    # "roughly within [-4, 4]": at most a few Gaussian-tail points outside
    assert (x.abs() > 4).any(dim=1).float().mean() < 0.005


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_deterministic_under_generator(name):
    fn = DATASETS[name]
    assert torch.equal(fn(300, gen(7)), fn(300, gen(7)))
    assert not torch.equal(fn(300, gen(7)), fn(300, gen(8)))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_zero_and_bad_n(name):
    assert DATASETS[name](0, gen(0)).shape == (0, 2)
    with pytest.raises(ValueError, match="non-negative"):
        DATASETS[name](-1, gen(0))
    with pytest.raises(TypeError, match="integer"):
        DATASETS[name](2.5, gen(0))


def test_eight_gaussians_has_eight_balanced_modes():
    n = 8000
    x = eight_gaussians(n, gen(1))
    centers = eight_gaussians_centers()
    assert torch.allclose(centers.norm(dim=1), torch.full((8,), EIGHT_GAUSSIANS_RADIUS))
    dist = torch.cdist(x, centers)
    nearest = dist.argmin(dim=1)
    counts = torch.bincount(nearest, minlength=8).float()
    # each mode has probability 1/8: count ~ Binomial(8000, 1/8), mean 1000, std ~30;
    # +-150 is 5 sigma. Neighbouring centres are ~2.16 apart, 6 component stds, so
    # nearest-centre assignment mislabels almost nothing.
    assert (counts - n / 8).abs().max() < 150
    # the points are tight around their centre (std 0.354 per axis)
    assert dist.min(dim=1).values.mean() < 0.6


def test_moons_has_two_components():
    x = moons(2000, gen(2), noise=0.0)
    # undo the centring and scaling to the make_moons geometry: upper moon is the unit
    # half circle about (0, 0), lower the unit half circle about (1, 0.5)
    p = x / 2.0 + torch.tensor([0.5, 0.25])
    on_upper = ((p.norm(dim=1) - 1).abs() < 1e-4) & (p[:, 1] >= -1e-4)
    on_lower = (((p - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs() < 1e-4) & (p[:, 1] <= 0.5 + 1e-4)
    assert bool((on_upper | on_lower).all())
    frac_upper = on_upper.float().mean()
    assert abs(float(frac_upper) - 0.5) < 0.05  # Binomial std ~0.011
    with pytest.raises(ValueError, match="noise"):
        moons(10, gen(3), noise=-1.0)


def test_spirals_two_arms_symmetric():
    x = spirals(4000, gen(4), noise=0.0)
    r = x.norm(dim=1)
    assert float(r.max()) <= math.pi + 1e-4
    # the two arms are point reflections of each other: the mean is ~0
    assert x.mean(0).abs().max() < 0.1


def test_rings_radii():
    x = rings(4000, gen(5), noise=0.0)
    r = x.norm(dim=1)
    radii = torch.tensor(RINGS_RADII)
    assert torch.isclose(r.unsqueeze(1), radii, atol=1e-5).any(dim=1).all()
    counts = torch.bincount((r.unsqueeze(1) - radii).abs().argmin(dim=1), minlength=4)
    assert (counts.float() - 1000).abs().max() < 150


def test_checkerboard_dark_cells_only():
    x = DATASETS["checkerboard"](4000, gen(6))
    cells = ((x + 4) // 2).long().clamp(0, 3)
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())
    assert len({tuple(c) for c in cells.tolist()}) == 8


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="unknown toy data set 'swissroll'") as info:
        get_dataset("swissroll")
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="choose one of"):
        ToyDomain(dataset="nope")
    assert get_dataset("8gaussians") is eight_gaussians
    assert get_dataset("Two-Moons") is moons


def test_sample_dataset_device():
    assert sample_dataset("gaussian", 5, gen(0), device="cpu").device.type == "cpu"


def test_toy_domain_protocol_and_sampling():
    domain = ToyDomain(dataset="moons", source="eight_gaussians")
    assert isinstance(domain, Domain)
    assert DOMAINS.get("toy") is ToyDomain
    assert domain.space.event_shape == (2,)
    data = domain.sample_data(64, gen(0))
    src = domain.sample_source(64, gen(0))
    assert data.shape == src.shape == (64, 2)
    assert torch.equal(data, moons(64, gen(0)))
    assert torch.equal(src, eight_gaussians(64, gen(0)))
    # default source: the standard normal
    assert torch.equal(ToyDomain("rings").sample_source(10, gen(1)), torch.randn(10, 2, generator=gen(1)))


def test_toy_domain_network():
    domain = ToyDomain()
    net = domain.default_network()
    assert isinstance(net, nn.Module)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 256), (256, 256), (256, 256), (256, 1)]
    assert sum(isinstance(m, nn.SiLU) for m in net.modules()) == 3
    assert net(torch.zeros(7, 2)).shape == (7, 1)
    small = domain.default_network(hidden=8, depth=1)
    assert small(torch.zeros(3, 2)).shape == (3, 1)
    with pytest.raises(ValueError, match="depth"):
        domain.default_network(depth=0)


def test_toy_domain_metrics():
    domain = ToyDomain("moons")
    ref = domain.sample_data(300, gen(0))
    good = domain.metrics(domain.sample_data(300, gen(1)), ref)
    bad = domain.metrics(domain.sample_source(300, gen(1)), ref)
    assert set(good) == {"w2", "mmd"}
    assert all(isinstance(v, float) for v in good.values())
    # negative control: the Gaussian source is much further from the moons than moons are
    assert bad["w2"] > 2 * good["w2"]
    assert bad["mmd"] > 5 * max(good["mmd"], 1e-3)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        domain.metrics(torch.zeros(10, 3), ref)


def test_plot_titles_name_the_colours():
    domain = ToyDomain("8gaussians")
    x = domain.sample_data(50, gen(0))
    ax = domain.plot(x, reference=x + 0.1).axes[0]
    # plot_samples draws samples in orange over the data in blue
    assert ax.get_title() == "eight_gaussians: samples (orange) vs data (blue)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x1", "x2")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "samples"]
    assert domain.plot(x).axes[0].get_title() == "eight_gaussians: samples"


# ----------------------------------------------------------------------------- protocol


def test_test_data_is_a_fixed_draw_independent_of_training_draws():
    domain = ToyDomain("moons", test_size=500)
    test = domain.test_data()
    assert test.shape == (500, 2) and test.dtype == torch.float32
    assert torch.equal(test, ToyDomain("moons", test_size=500).test_data())  # fixed, across instances
    assert torch.equal(domain.test_data(20), test[:20])
    picked = domain.test_data(20, gen(0))
    assert all((test == row).all(1).any() for row in picked)  # rows of the held-out draw
    # a training draw from the trainer's first data stream (seed * 1_000_003 + rank, seed 0)
    train = domain.train_data(500, gen(0))
    assert not torch.equal(train, test)
    assert torch.cdist(test, train).min() > 0  # no held-out point is a training point
    # same distribution, though: the held-out set is as close to fresh data as data is to data
    fresh = domain.metrics(domain.train_data(500, gen(1)), test)
    assert fresh["w2"] < 0.5 and domain.metrics(domain.sample_source(500, gen(1)), test)["w2"] > 2 * fresh["w2"]
    with pytest.raises(ValueError, match="holds 500 points"):
        domain.test_data(501)
    with pytest.raises(ValueError, match="not a finite set"):
        domain.train_data()
    with pytest.raises(ValueError, match="test_size must be >= 2"):
        ToyDomain(test_size=1)


def test_metrics_default_reference_is_the_held_out_draw():
    domain = ToyDomain("rings")
    samples = domain.sample_data(400, gen(3))
    assert domain.metrics(samples) == domain.metrics(samples, domain.test_data())
    assert domain.metrics(samples) != domain.metrics(samples, domain.sample_data(2000, gen(4)))


def test_sample_source_like_a_data_batch():
    domain = ToyDomain("moons", source="eight_gaussians")
    like = domain.sample_data(9, gen(0)).double()
    x = domain.sample_source(generator=gen(1), like=like)
    assert x.shape == (9, 2) and x.dtype == torch.float64 and x.device == like.device
    assert torch.equal(x, eight_gaussians(9, gen(1)).double())  # the source set, not standard noise
    with pytest.raises(ValueError, match="n=3 and a batch of 9"):
        domain.sample_source(3, like=like)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        domain.sample_source(like=torch.zeros(9, 3))


def test_decode_gives_points_as_float_pairs():
    domain = ToyDomain()
    x = torch.tensor([[0.25, -1.5], [3.0, 0.0]])
    points = domain.decode(x)
    assert points == [(0.25, -1.5), (3.0, 0.0)]
    assert all(type(c) is float for p in points for c in p)
    assert domain.decode(torch.zeros(0, 2)) == []
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        domain.decode(torch.zeros(3))
