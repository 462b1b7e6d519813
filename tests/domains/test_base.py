"""The Domain protocol's defaults: sample_source (with like=), plot, and the helpers domains share."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from energyflow.domains.base import Domain, PlotUnavailableError, resolve_like, subset
from energyflow.errors import EnergyflowError, InvalidValueError
from energyflow.spaces import Euclidean


class Cube(Domain):
    """A minimal domain that keeps every default of the protocol."""

    name, space = "cube", Euclidean((2, 3))

    def sample_data(self, n, generator=None, device=None):
        return torch.rand(n, 2, 3, generator=generator)

    def train_data(self, n=None, generator=None):
        return self.sample_data(n, generator)

    def test_data(self, n=None, generator=None):
        return self.sample_data(n or 8, torch.Generator().manual_seed(5))

    def default_network(self):
        return nn.Sequential(nn.Flatten(), nn.Linear(6, 1))

    def metrics(self, samples, reference=None):
        return {}

    def decode(self, samples):
        return list(samples)


def test_default_sample_source_is_the_space_noise():
    d = Cube()
    x = d.sample_source(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 2, 3)
    assert torch.equal(x, torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0)))


def test_sample_source_like_copies_size_device_and_dtype():
    d = Cube()
    like = torch.zeros(7, 2, 3, dtype=torch.float64)
    x = d.sample_source(generator=torch.Generator().manual_seed(0), like=like)
    assert x.shape == like.shape and x.dtype == torch.float64 and x.device == like.device
    assert torch.equal(d.sample_source(7, torch.Generator().manual_seed(0), like=like), x)  # n == B is fine
    # in the default dtype, the same draw as without like: pairing does not change the stream
    paired = d.sample_source(generator=torch.Generator().manual_seed(0), like=like.float())
    assert torch.equal(paired, d.sample_source(7, torch.Generator().manual_seed(0)))
    assert d.sample_source(like=like[:0]).shape == (0, 2, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sample_source_like_on_cuda_with_a_cpu_generator():
    like = torch.zeros(4, 2, 3, device="cuda")
    x = Cube().sample_source(generator=torch.Generator().manual_seed(0), like=like)
    assert x.device == like.device and x.shape == like.shape


def test_sample_source_refuses_mismatches():
    d = Cube()
    with pytest.raises(InvalidValueError, match=r"needs n \(the number of states\) or like"):
        d.sample_source()
    with pytest.raises(InvalidValueError, match="n=3 and a batch of 7"):
        d.sample_source(3, like=torch.zeros(7, 2, 3))
    with pytest.raises(InvalidValueError, match=r"\(B, 2, 3\)"):
        d.sample_source(like=torch.zeros(7, 6))


def test_default_plot_says_the_domain_has_none():
    with pytest.raises(PlotUnavailableError, match="cube domain has no plot") as info:
        Cube().plot(torch.zeros(2, 2, 3))
    assert isinstance(info.value, EnergyflowError)


def test_a_class_missing_a_member_is_not_a_domain():
    class NoDecode:
        name, space, options, network_options = "x", Euclidean(1), (), ()

        def sample_data(self, n, generator=None, device=None): ...
        def train_data(self, n=None, generator=None): ...
        def test_data(self, n=None, generator=None): ...
        def sample_source(self, n=None, generator=None, device=None, like=None): ...
        def default_network(self): ...
        def metrics(self, samples, reference=None): ...
        def plot(self, samples, reference=None, ax=None): ...
        def save_samples(self, samples, path): ...

    assert not isinstance(NoDecode(), Domain)
    NoDecode.decode = lambda self, samples: []
    assert isinstance(NoDecode(), Domain)


def test_subset_all_first_or_drawn():
    data = torch.arange(10).float().unsqueeze(1)
    assert torch.equal(subset(data, None, None, "x"), data)
    assert torch.equal(subset(data, 3, None, "x"), data[:3])
    drawn = subset(data, 4, torch.Generator().manual_seed(0), "x")
    assert drawn.shape == (4, 1) and drawn.unique().numel() == 4  # without replacement
    assert torch.equal(drawn, subset(data, 4, torch.Generator().manual_seed(0), "x"))
    with pytest.raises(InvalidValueError, match="the set holds 10 points"):
        subset(data, 11, None, "the set")
    with pytest.raises(InvalidValueError, match="holds 10"):
        subset(data, -1, None, "the set")


def test_resolve_like_keeps_an_explicit_device():
    n, device, dtype = resolve_like(Euclidean(1), None, torch.zeros(3, 1), "meta")
    assert (n, device, dtype) == (3, "meta", torch.float32)
