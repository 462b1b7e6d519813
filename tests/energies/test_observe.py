"""observe(): Pyro-style likelihoods as tempered terms; the Gaussian shortcut equals the
written-out Pyro model; errors that say how to fix a model."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import energyflow as ef
from energyflow.energies import ObservationError
from energyflow.field import FieldError

F64 = torch.float64


@given(d=st.integers(1, 5), m=st.integers(1, 4), sigma=st.floats(0.05, 3.0), seed=st.integers(0, 2**31 - 1))
def test_shortcut_equals_pyro_function_and_closed_form(d, m, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, d, generator=g, dtype=F64)
    y = torch.randn(m, generator=g, dtype=F64)
    x = torch.randn(7, d, generator=g, dtype=F64)

    def likelihood(x):
        pyro.sample("y", dist.Normal(x @ A.T, sigma).to_event(1), obs=y)

    by_hand = ef.observe(likelihood)
    shortcut = ef.observe(y, forward=A, noise=sigma)
    closed = ((x @ A.T - y) ** 2).sum(-1) / (2 * sigma**2) + m * math.log(sigma) + 0.5 * m * math.log(2 * math.pi)
    assert torch.allclose(by_hand(x), closed)
    assert torch.allclose(shortcut(x), closed)
    gh = ef.compile(by_hand).grad(x, eps=0.7)
    gs = ef.compile(shortcut).grad(x, eps=0.7)
    assert torch.allclose(gh, gs)
    assert torch.allclose(gs, 0.7 * (x @ A.T - y) @ A / sigma**2)  # tempered: times eps
    assert by_hand.coupling == shortcut.coupling == "tempered"


def test_shortcut_with_function_forward_and_image_shapes():
    y = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(16).reshape(1, 4, 4) % 2).float()
    term = ef.observe(y, forward=lambda x: mask * x, noise=0.1)
    x = torch.randn(3, 1, 4, 4)
    expected = -dist.Normal(mask * x, 0.1).log_prob(y).sum((1, 2, 3))
    assert torch.allclose(term(x), expected, rtol=1e-5)


def test_multiple_sites_masks_and_scales_add_up():
    y1, y2 = torch.tensor([0.5]), torch.tensor([1.0, -1.0])

    def likelihood(x):
        pyro.sample("a", dist.Normal(x[:, :1], 1.0).to_event(1), obs=y1)
        with pyro.poutine.scale(scale=2.0):
            pyro.sample("b", dist.Normal(x, 0.5).to_event(1), obs=y2)

    x = torch.randn(4, 2)
    expected = -dist.Normal(x[:, :1], 1.0).log_prob(y1).sum(-1) - 2.0 * dist.Normal(x, 0.5).log_prob(y2).sum(-1)
    assert torch.allclose(ef.observe(likelihood)(x), expected)


def test_forgot_to_event_says_to_event():
    y = torch.zeros(3)

    def likelihood(x):
        pyro.sample("y", dist.Normal(x, 1.0), obs=y)

    term = ef.observe(likelihood)
    with pytest.raises(ObservationError, match=r"'y'.*\(5, 3\).*to_event\(1\)"):
        term(torch.zeros(5, 3))
    with pytest.raises(FieldError, match="to_event"):  # through the field: still our error
        ef.compile(term).energy(torch.zeros(5, 3))


def test_unobserved_or_empty_models_are_errors():
    def latent(x):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))

    def nothing(x):
        return None

    with pytest.raises(ObservationError, match="not observed"):
        ef.observe(latent)(torch.zeros(2, 1))
    with pytest.raises(ObservationError, match="observed nothing"):
        ef.observe(nothing)(torch.zeros(2, 1))
    assert ef.observe(nothing, name="empty").name == "empty"
    assert ef.observe(latent).name == "observe(latent)"


@pytest.mark.parametrize("args, kwargs, exc, fragment", [
    ((torch.zeros(2),), {"forward": torch.eye(2)}, TypeError, "both"),
    ((torch.zeros(2),), {"forward": torch.eye(3), "noise": 0.1}, ValueError, "forward matrix"),
    ((torch.zeros(2),), {"forward": torch.eye(2), "noise": 0.0}, ValueError, "noise"),
    ((torch.tensor([0.0, math.nan]),), {"forward": torch.eye(2), "noise": 0.1}, ValueError, "NaN"),
    ((torch.zeros(2),), {"forward": "A", "noise": 0.1}, TypeError, "forward"),
    ((3,), {}, TypeError, "function"),
])
def test_observe_validates_arguments(args, kwargs, exc, fragment):
    with pytest.raises(exc, match=fragment):
        ef.observe(*args, **kwargs)


@pytest.mark.parametrize(
    "y_shape", [(3,), (2, 1), (5, 1)],  # 3 observations vs 1 prediction; a batch of 2 (or 5) vs 4 samples
)
def test_observed_value_that_would_broadcast_is_named(y_shape):
    y = torch.zeros(y_shape)

    def likelihood(x):  # batch (4,), event (1,)
        pyro.sample("y", dist.Normal(x[:, :1], 0.1).to_event(1), obs=y)

    with pytest.raises(ObservationError) as info:
        ef.observe(likelihood)(torch.zeros(4, 2))
    message = str(info.value)
    assert "'y'" in message and str(y_shape) in message and "(4,)" in message and "(1,)" in message


@pytest.mark.parametrize("y_shape", [(1,), (4, 1), (1, 1)])
def test_observed_value_of_event_shape_or_full_shape_is_accepted(y_shape):
    y = torch.full(y_shape, 0.5)

    def likelihood(x):
        pyro.sample("y", dist.Normal(x[:, :1], 0.1).to_event(1), obs=y)

    out = ef.observe(likelihood)(torch.zeros(4, 2))
    expected = -dist.Normal(torch.zeros(4, 1), 0.1).log_prob(torch.full((4, 1), 0.5)).sum(-1)
    assert torch.allclose(out, expected)


def test_observe_inside_a_plate_sums_the_data_dimension():
    """pyro.plate over the data (to the right of the sample dimension) is the same
    likelihood as .to_event(1); the plate's own site is not an unobserved site."""
    import pyro
    import pyro.distributions as dist

    y = torch.tensor([0.5, -1.0, 2.0])

    def plated(x):  # x: (B, 1)
        with pyro.plate("data", 3, dim=-1):
            pyro.sample("y", dist.Normal(x, 1.0), obs=y)

    def evented(x):
        pyro.sample("y", dist.Normal(x.expand(-1, 3), 1.0).to_event(1), obs=y)

    x = torch.randn(5, 1)
    assert torch.allclose(ef.observe(plated)(x), ef.observe(evented)(x))


def test_poutine_scale_and_mask_act_as_in_pyro():
    import pyro
    import pyro.distributions as dist
    from pyro import poutine

    def lik(x):
        pyro.sample("y", dist.Normal(x, 1.0).to_event(1), obs=torch.zeros(2))

    x = torch.randn(4, 2)
    base = ef.observe(lik)(x)
    assert torch.allclose(ef.observe(poutine.scale(lik, scale=3.0))(x), 3.0 * base)
    assert torch.allclose(ef.observe(poutine.mask(lik, mask=torch.tensor(False)))(x), torch.zeros(4))
