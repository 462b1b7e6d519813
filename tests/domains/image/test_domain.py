"""The image domain: digits sampling, held-out data, default network, metrics, decode, plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from energyflow.domains import Domain
from energyflow.domains.image import ImageDomain, load_digits_split
from energyflow.domains.image.networks import ConvPotential, count_parameters
from energyflow.registry import DOMAINS


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module", autouse=True)
def classifier_cache(tmp_path_factory):
    """One cache directory per test process (shared with test_classifier.py)."""
    cache = tmp_path_factory.getbasetemp() / "energyflow-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENERGYFLOW_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def digits() -> ImageDomain:
    return ImageDomain("digits")


# ----------------------------------------------------------------------------- digits data


def test_is_a_registered_domain(digits):
    assert DOMAINS.get("image") is ImageDomain
    assert isinstance(digits, Domain)
    assert digits.name == "image" and digits.space.event_shape == (1, 8, 8)


def test_shapes_ranges_and_grey_levels(digits):
    train, test = digits.train_data(), digits.test_data()
    assert train.shape == (1438, 1, 8, 8) and test.shape == (359, 1, 8, 8)
    for x in (train, test):
        assert x.dtype == torch.float32
        assert x.min() == -1.0 and x.max() == 1.0
        levels = (x + 1.0) * 8.0  # the original 0..16 grey levels
        assert torch.equal(levels, levels.round())
    assert digits.train_labels().shape == (1438,) and digits.test_labels().dtype == torch.int64


def test_the_domain_serves_the_fixed_split(digits):
    s = load_digits_split(0, 0.2)
    assert torch.equal(digits.test_data(), s.test_images) and torch.equal(digits.train_data(), s.train_images)
    assert digits.test_labels().bincount().tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    assert torch.equal(ImageDomain("digits", split_seed=0).test_data(), digits.test_data())
    assert not torch.equal(ImageDomain("digits", split_seed=1).test_data(), digits.test_data())


def test_accessors_return_copies(digits):
    x = digits.test_data()
    x.fill_(0.0)
    assert digits.test_data().abs().sum() > 0


def test_sample_data_is_reproducible_and_drawn_from_train(digits):
    a = digits.sample_data(64, gen(3))
    b = digits.sample_data(64, gen(3))
    c = digits.sample_data(64, gen(4))
    assert a.shape == (64, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    train = digits.train_data().flatten(1)
    dist = torch.cdist(a.flatten(1), train)
    assert bool((dist.min(dim=1).values == 0).all()), "every draw must be a training image"
    assert digits.sample_data(0, gen(0)).shape == (0, 1, 8, 8)
    assert digits.sample_data(2, gen(0), device="cpu").device.type == "cpu"
    with pytest.raises(ValueError):
        digits.sample_data(-1)


def test_dequantization_stays_within_one_grey_level():
    d = ImageDomain("digits", dequantize=True)
    x = d.sample_data(256, gen(0))
    levels = (x + 1.0) * 8.0
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert (levels - levels.round()).abs().max() <= 0.5 + 1e-5
    assert not torch.equal(levels, levels.round())


def test_sample_source_is_standard_normal(digits):
    x = digits.sample_source(4000, gen(0))
    assert x.shape == (4000, 1, 8, 8)
    # 256,000 N(0,1) draws: the mean has se 0.002, the std se 0.0014; 5 se tolerances
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1.0) < 0.007
    assert torch.equal(x, digits.sample_source(4000, gen(0)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="digits"):
        ImageDomain("mnist")
    with pytest.raises(ValueError, match="gaussian"):
        ImageDomain("digits", source="moons")
    with pytest.raises(ValueError, match="test_fraction"):
        ImageDomain("digits", test_fraction=1.0)


# ----------------------------------------------------------------------------- network


def test_default_network_output_and_input_gradient(digits):
    net = digits.default_network()
    assert isinstance(net, ConvPotential) and count_parameters(net) == 181_249
    x = digits.sample_data(5, gen(0)).requires_grad_(True)
    v = net(x)
    assert v.shape == (5, 1)
    (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    assert g.shape == x.shape and torch.isfinite(g).all()
    g.pow(2).sum().backward()  # Energy Matching differentiates grad_x V again
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    # per-sample energies do not depend on the rest of the batch
    torch.testing.assert_close(net(x[:1]), v[:1])
    assert digits.default_network(hidden=8, depth=3)(x).shape == (5, 1)
    with pytest.raises(ValueError, match="divisible"):
        digits.default_network(depth=4)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros(2, 3, 8, 8))


# ----------------------------------------------------------------------------- metrics


def test_metrics_real_digits_versus_noise(digits):
    """Held-out digits cover every class and sit close; Gaussian noise does not (negative control)."""
    test = digits.test_data()
    real = digits.sample_data(test.shape[0], gen(0))
    good = digits.metrics(real, test)
    assert set(good) == {"fd", "mode_coverage", "class_entropy"}
    assert good["mode_coverage"] == 1.0
    assert good["class_entropy"] > 2.25  # ln 10 = 2.303 for balanced classes
    assert good["fd"] < 15.0
    bad = digits.metrics(digits.sample_source(test.shape[0], gen(1)), test)
    assert bad["mode_coverage"] <= 0.7  # measured 0.5
    assert bad["class_entropy"] < good["class_entropy"] - 0.3
    assert bad["fd"] > 10.0 * good["fd"]
    one_class = test[digits.test_labels() == 3]
    collapsed = digits.metrics(one_class, test)
    assert collapsed["mode_coverage"] <= 0.2 and collapsed["class_entropy"] < 0.3


def test_class_histogram_matches_labels(digits):
    test, labels = digits.test_data(), digits.test_labels()
    hist = digits.class_histogram(test)
    assert hist.shape == (10,) and abs(float(hist.sum()) - 1.0) < 1e-12
    truth = labels.bincount(minlength=10).double() / labels.numel()
    assert (hist - truth).abs().max() < 0.02  # accuracy > 95%: few predictions move
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        digits.metrics(torch.zeros(4, 64), test)


def test_plot_returns_a_figure(digits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = digits.plot(digits.sample_data(10, gen(0)))
    fig2 = digits.plot(digits.sample_data(10, gen(0)), reference=digits.test_data()[:12])
    assert fig.axes and fig2.axes
    assert fig.axes[0].get_title() == "samples"
    assert fig2.axes[0].get_title() == "samples (top) / data (bottom)"
    plt.close(fig)
    plt.close(fig2)


# ----------------------------------------------------------------------------- protocol


def test_metrics_default_reference_is_the_test_split(digits, monkeypatch):
    import energyflow.domains.image.domain as domain_module

    seen = []
    real = domain_module.classifier_frechet_distance

    def spy(samples, reference):
        seen.append(reference)
        return real(samples, reference)

    monkeypatch.setattr(domain_module, "classifier_frechet_distance", spy)
    samples = digits.sample_data(64, gen(0))
    default = digits.metrics(samples)
    assert len(seen) == 1 and torch.equal(seen[0], digits.test_data())  # all 359 held-out digits
    assert default == digits.metrics(samples, digits.test_data())
    # not the training digits: against them the same samples (drawn from train) score otherwise
    assert default["fd"] != digits.metrics(samples, digits.train_data(359))["fd"]


def test_train_and_test_subsets(digits):
    assert torch.equal(digits.train_data(5), digits.train_data()[:5])
    picked = digits.test_data(10, gen(0))
    assert picked.shape == (10, 1, 8, 8) and torch.equal(picked, digits.test_data(10, gen(0)))
    flat = digits.test_data().flatten(1)
    assert all((flat == row).all(1).any() for row in picked.flatten(1))
    with pytest.raises(ValueError, match="test split holds 359"):
        digits.test_data(360)


def test_sample_source_like_a_batch_of_images(digits):
    like = digits.sample_data(6, gen(0)).double()
    x = digits.sample_source(generator=gen(1), like=like)
    assert x.shape == (6, 1, 8, 8) and x.dtype == torch.float64 and x.device == like.device
    assert torch.equal(digits.sample_source(generator=gen(1), like=like.float()), digits.sample_source(6, gen(1)))
    with pytest.raises(ValueError, match="n=2 and a batch of 6"):
        digits.sample_source(2, like=like)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        digits.sample_source(like=torch.zeros(6, 64))


def test_decode_gives_uint8_images(digits):
    test = digits.test_data(3)
    images = digits.decode(test)
    assert len(images) == 3
    assert all(im.shape == (8, 8) and im.dtype == np.uint8 for im in images)
    # the 17 grey levels 0..16 map to round(level * 255 / 16)
    levels = ((test[0, 0] + 1.0) * 8.0).round().numpy()
    assert np.array_equal(images[0], np.round(levels * 255 / 16).astype(np.uint8))
    assert (digits.decode(torch.full((1, 1, 8, 8), 5.0))[0] == 255).all()  # clipped to [-1, 1] first
    assert digits.decode(torch.full((1, 1, 8, 8), -1.0))[0].max() == 0
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        digits.decode(torch.zeros(2, 8, 8))


def test_decode_colour_images_are_height_width_channel():
    d = ImageDomain.__new__(ImageDomain)  # a CIFAR-shaped domain without the data on disk
    from energyflow.spaces import Euclidean

    d.dataset, d.space = "cifar10", Euclidean((3, 32, 32))
    x = torch.zeros(2, 3, 32, 32)
    x[:, 0] = 1.0  # red channel full
    images = d.decode(x)
    assert images[0].shape == (32, 32, 3) and images[0].dtype == np.uint8
    assert (images[0][..., 0] == 255).all() and (images[0][..., 1] == 128).all()
