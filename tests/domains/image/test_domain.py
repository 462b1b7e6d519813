"""The image domain: digits split and sampling, default network, metrics, CIFAR-10 loader."""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch

from energyflow.domains import Domain
from energyflow.domains.image import CIFAR10_DIRNAME, ImageDomain, load_cifar10, load_digits_split
from energyflow.domains.image.networks import ConvPotential, count_parameters
from energyflow.registry import DOMAINS

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


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


def test_split_is_fixed_stratified_and_disjoint(digits):
    s = load_digits_split(0, 0.2)
    train_idx, test_idx = set(s.train_index.tolist()), set(s.test_index.tolist())
    assert not train_idx & test_idx
    assert len(train_idx | test_idx) == 1797
    # the documented split: first held-out positions and a checksum of all of them
    assert s.test_index[:10].tolist() == [1, 2, 6, 10, 13, 16, 22, 25, 29, 31]
    assert int(s.test_index.sum()) == 331046
    assert digits.test_labels().bincount().tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    again = ImageDomain("digits", split_seed=0)
    assert torch.equal(again.test_data(), digits.test_data())
    other = load_digits_split(1, 0.2)
    assert not torch.equal(other.test_index, s.test_index)
    assert load_digits_split(0, 0.5).test_index.numel() == 898  # round() halves to even


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


# ----------------------------------------------------------------------------- CIFAR-10


def _write_fake_cifar(root, per_batch: int = 4, test: int = 3, seed: int = 0) -> dict:
    """A tiny copy of the official python format: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_DIRNAME
    folder.mkdir(parents=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch}, fh, protocol=2)
    return written


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision checks the official MD5 sums; fakes fail")
def test_cifar10_loader_reads_official_python_batches(tmp_path):
    written = _write_fake_cifar(tmp_path)
    images, labels = load_cifar10(tmp_path, train=True)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    first = written["data_batch_1"][0][0]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major
    assert int(images[0, 0, 0, 1]) == int(first[1])
    assert int(images[0, 1, 0, 0]) == int(first[1024])
    assert int(images[0, 2, 31, 31]) == int(first[3071])
    assert labels.tolist()[:4] == written["data_batch_1"][1]
    assert int(images[19, 0, 0, 0]) == int(written["data_batch_5"][0][3, 0])

    d = ImageDomain("cifar10", root=tmp_path)
    assert d.space.event_shape == (3, 32, 32)
    train, test = d.train_data(), d.test_data()
    assert train.shape == (20, 3, 32, 32) and test.shape == (3, 3, 32, 32)
    assert train.dtype == torch.float32 and train.min() >= -1.0 and train.max() <= 1.0
    torch.testing.assert_close(train[0, 0, 0, 1], torch.tensor(first[1] / 127.5 - 1.0, dtype=torch.float32))
    x = d.sample_data(6, gen(0))
    assert x.shape == (6, 3, 32, 32) and torch.equal(x, d.sample_data(6, gen(0)))
    net = d.default_network(hidden=8, depth=3)
    assert net(x).shape == (6, 1)
    m = d.metrics(x, train)
    assert set(m) == {"pixel_fd"} and m["pixel_fd"] >= 0.0
    with pytest.raises(ValueError, match="digits"):
        d.class_histogram(x)
    # root may also point straight at the batches folder
    assert load_cifar10(tmp_path / CIFAR10_DIRNAME, train=False)[0].shape == (3, 3, 32, 32)


def test_cifar10_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ImageDomain("cifar10", root=tmp_path / "nowhere")
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and CIFAR10_DIRNAME in message and "never downloads" in message


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision reads the files itself")
def test_cifar10_incomplete_copy_names_missing_files(tmp_path):
    _write_fake_cifar(tmp_path)
    os.remove(tmp_path / CIFAR10_DIRNAME / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(tmp_path, train=True)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision reads the files itself")
def test_cifar10_loader_refuses_foreign_pickles(tmp_path):
    _write_fake_cifar(tmp_path)
    with open(tmp_path / CIFAR10_DIRNAME / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_cifar10(tmp_path, train=False)
