"""The cached digit classifier behind the digits metrics."""

from __future__ import annotations

import os

import pytest
import torch

from energyflow.domains.image import classifier as dc
from energyflow.domains.image.data import load_digits_split


@pytest.fixture(scope="module", autouse=True)
def classifier_cache(tmp_path_factory):
    """One cache directory per test process, so the classifier trains at most once.

    ``getbasetemp()`` is shared by every module of one pytest process (worker), and the
    classifier is also kept in memory, so the other image test modules reuse it.
    """
    cache = tmp_path_factory.getbasetemp() / "energyflow-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENERGYFLOW_CACHE", str(cache))
        dc.get_digit_classifier()
        yield cache


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_held_out_accuracy_above_95_percent(split):
    pred = dc.predict_digits(split.test_images)
    accuracy = float((pred == split.test_labels).double().mean())
    assert accuracy > 0.95, accuracy


def test_returned_model_is_frozen_and_in_eval_mode():
    net = dc.get_digit_classifier()
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_features_shape_and_determinism(split):
    a = dc.digit_features(split.test_images[:50])
    b = dc.digit_features(split.test_images[:50].clone())
    assert a.shape == (50, dc.FEATURE_DIM) and a.dtype == torch.float32
    assert torch.equal(a, b)
    # batching does not change the features (up to float round-off)
    c = dc.digit_features(split.test_images[:50], batch_size=7)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


def test_bad_input_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        dc.digit_features(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="samples"):
        dc.classifier_frechet_distance(torch.zeros(4, 3, 8, 8), torch.zeros(4, 1, 8, 8))


def test_frechet_distance_separates_real_from_noise(split):
    """Real held-out digits vs real training digits is small; noise is far (negative controls).

    Sets of equal size (359) are compared, since the FD estimate is biased upward for
    small sets. Measured: real ~5, blurred ~290, shuffled pixels ~175, Gaussian ~240.
    """
    test = split.test_images
    n = test.shape[0]
    gen = torch.Generator().manual_seed(0)
    real = split.train_images[torch.randperm(split.train_images.shape[0], generator=gen)[:n]]
    fd_real = dc.classifier_frechet_distance(real, test)
    noise = torch.randn(n, 1, 8, 8, generator=gen).clamp(-1, 1)
    blurred = torch.nn.functional.avg_pool2d(test, 3, stride=1, padding=1)
    shuffled = test.flatten(1)[:, torch.randperm(64, generator=gen)].view_as(test)
    assert fd_real < 15.0, fd_real
    for name, bad in (("noise", noise), ("blurred", blurred), ("shuffled", shuffled)):
        fd_bad = dc.classifier_frechet_distance(bad, test)
        assert fd_bad > 10.0 * fd_real, (name, fd_bad, fd_real)
    assert dc.classifier_frechet_distance(test, test) < 1e-6


def test_cache_file_is_reused_not_retrained(classifier_cache, monkeypatch):
    path = dc.cache_path()
    assert path.parent == classifier_cache and path.is_file()
    reference = dc.get_digit_classifier()
    mtime, calls = path.stat().st_mtime_ns, dc._TRAIN_CALLS
    monkeypatch.setattr(dc, "_MEMORY", {})  # forget the in-memory copy: must come from disk
    loaded = dc.get_digit_classifier()
    assert loaded is not reference
    assert dc._TRAIN_CALLS == calls, "a valid cache file must not trigger training"
    assert path.stat().st_mtime_ns == mtime
    for a, b in zip(reference.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    x = load_digits_split().test_images[:20]
    assert torch.equal(reference.features(x), loaded.features(x))


@pytest.mark.parametrize("content", [b"not a torch file", b""])
def test_corrupt_cache_file_is_retrained(tmp_path, monkeypatch, content):
    reference = dc.get_digit_classifier()
    path = dc.cache_path(tmp_path)
    path.write_bytes(content)
    calls = []

    def fake_train(recipe=None):  # stands in for the real (deterministic, seconds-long) training
        calls.append(recipe)
        return reference, {"test_accuracy": 1.0, "train_accuracy": 1.0}

    monkeypatch.setattr(dc, "_MEMORY", {})
    monkeypatch.setattr(dc, "train_digit_classifier", fake_train)
    net = dc.get_digit_classifier(cache_dir=tmp_path)
    assert net is reference and len(calls) == 1
    payload = torch.load(path, weights_only=True)  # rewritten, now valid
    assert payload["key"] in path.name and "state_dict" in payload
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")], "temporary file left behind"


def test_cache_key_depends_on_the_recipe(monkeypatch):
    before = dc.cache_path("/cache")
    monkeypatch.setitem(dc.RECIPE, "epochs", dc.RECIPE["epochs"] + 1)
    assert dc.cache_path("/cache") != before


@pytest.mark.slow
def test_training_is_deterministic_and_leaves_global_state_alone():
    """Retraining gives bit-identical weights; global RNG, threads and flags are restored."""
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    net, info = dc.train_digit_classifier()
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert info["test_accuracy"] > 0.95
    for a, b in zip(net.state_dict().values(), dc.get_digit_classifier().state_dict().values()):
        assert torch.equal(a, b)
