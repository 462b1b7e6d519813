"""Image data: the fixed digits split and the local CIFAR-10 reader (restricted unpickler)."""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch

from energyflow.domains.image import CIFAR10_DIRNAME, ImageDomain, load_cifar10, load_digits_split
from energyflow.domains.image.data import canonical_dataset

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- digits


def test_split_is_fixed_stratified_and_disjoint():
    s = load_digits_split(0, 0.2)
    train_idx, test_idx = set(s.train_index.tolist()), set(s.test_index.tolist())
    assert not train_idx & test_idx
    assert len(train_idx | test_idx) == 1797
    # the documented split: first held-out positions and a checksum of all of them
    assert s.test_index[:10].tolist() == [1, 2, 6, 10, 13, 16, 22, 25, 29, 31]
    assert int(s.test_index.sum()) == 331046
    assert s.test_labels.bincount().tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    other = load_digits_split(1, 0.2)
    assert not torch.equal(other.test_index, s.test_index)
    assert load_digits_split(0, 0.5).test_index.numel() == 898  # round() halves to even
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(0, 1.0)


def test_dataset_names_and_aliases():
    assert canonical_dataset("Sklearn-Digits") == "digits" and canonical_dataset("cifar") == "cifar10"
    with pytest.raises(ValueError, match="choose one of: digits, cifar10"):
        canonical_dataset("mnist")


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
