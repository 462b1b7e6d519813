"""The Energy Matching loss against hand computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from energyflow.training.losses import (
    cd_loss,
    cd_term,
    energy_matching_loss,
    flow_loss,
    flow_weight,
    linear_path,
    trimmed_mean,
)

# Everything below runs in float64, so "equal to the hand computation" means equal up to
# a few ulps of reordered float64 arithmetic; 1e-12 relative is that and nothing more.
TIGHT = dict(rtol=1e-12, atol=1e-12)


class Quadratic(nn.Module):
    """V(x) = 0.5 * a * |x|^2, so grad V(x) = a x."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, x):
        return 0.5 * self.a * (x**2).flatten(1).sum(1)


def mlp(seed: int = 0, d: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.SiLU(), nn.Linear(16, 16), nn.SiLU(), nn.Linear(16, 1)).double()


def batch(seed: int, b: int = 6, d: int = 2):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, d, generator=g, dtype=torch.float64)
    x1 = torch.randn(b, d, generator=g, dtype=torch.float64) + 2.0
    t = torch.rand(b, generator=g, dtype=torch.float64)
    return x0, x1, t


def test_linear_path_by_hand():
    x0, x1, t = batch(0)
    path = linear_path(x0, x1, t)
    tb = t[:, None]
    assert torch.equal(path.xt, (1 - tb) * x0 + tb * x1)
    assert torch.equal(path.velocity, x1 - x0)
    assert torch.equal(linear_path(x0, x1, torch.zeros(6, dtype=torch.float64)).xt, x0)
    assert torch.equal(linear_path(x0, x1, torch.ones(6, dtype=torch.float64)).xt, x1)
    with pytest.raises(ValueError):
        linear_path(x0, x1, t[:3])
    with pytest.raises(ValueError):
        linear_path(x0, x1[:, :1], t)


def test_linear_path_broadcasts_over_image_events():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(3, 1, 2, 2, generator=g), torch.randn(3, 1, 2, 2, generator=g)
    t = torch.tensor([0.0, 0.25, 1.0])
    xt = linear_path(x0, x1, t).xt
    for b in range(3):
        assert torch.equal(xt[b], (1 - t[b]) * x0[b] + t[b] * x1[b])


@pytest.mark.parametrize("a", [0.0, 0.7, 2.5])
def test_flow_loss_quadratic_potential_by_hand(a):
    x0, x1, t = batch(2)
    loss = flow_loss(Quadratic(a), linear_path(x0, x1, t), tau_star=1.0)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    expected = ((-a * xt - (x1 - x0)) ** 2).mean(1).mean()
    torch.testing.assert_close(loss, expected, **TIGHT)


def test_flow_loss_linear_potential_by_hand():
    torch.manual_seed(0)
    V = nn.Linear(3, 1).double()
    x0, x1, t = batch(3, d=3)
    loss = flow_loss(V, linear_path(x0, x1, t))
    # grad of w.x + b is w whatever x: the loss does not depend on t or the bias.
    expected = ((-V.weight - (x1 - x0)) ** 2).mean()
    torch.testing.assert_close(loss, expected, **TIGHT)


def test_flow_weight_values():
    t = torch.tensor([0.0, 0.5, 0.79, 0.8, 0.9, 0.95, 1.0], dtype=torch.float64)
    w = flow_weight(t, tau_star=0.8)
    # 1 before tau*, then (1 - t) / (1 - tau*): 1 at tau*, 0.5 at 0.9, 0.25 at 0.95, 0 at 1.
    torch.testing.assert_close(w, torch.tensor([1, 1, 1, 1, 0.5, 0.25, 0], dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(flow_weight(t, tau_star=1.0), torch.ones_like(t))
    # Never negative beyond t = 1 (the ramp is clamped).
    assert flow_weight(torch.tensor([1.5]), 0.8).item() == 0.0


def test_flow_loss_weighted_by_hand():
    x0, x1, _ = batch(4, b=4)
    t = torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    a = 1.3
    loss = flow_loss(Quadratic(a), linear_path(x0, x1, t), tau_star=0.8)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    per_sample = ((-a * xt - (x1 - x0)) ** 2).mean(1)
    w = torch.tensor([1.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(loss, (w * per_sample).sum() / 4, **TIGHT)


def test_trimmed_mean_drops_the_highest_fraction():
    v = torch.tensor([5.0, 1.0, 10.0, 3.0, 2.0, 9.0, 4.0, 8.0, 6.0, 7.0], dtype=torch.float64)
    assert trimmed_mean(v, 0.0).item() == 5.5
    assert trimmed_mean(v, 0.2).item() == 4.5  # drops 10 and 9: mean of 1..8
    assert trimmed_mean(v, 0.25).item() == 4.5  # int(2.5) = 2 dropped
    assert trimmed_mean(v, 0.5).item() == 3.0  # mean of 1..5
    assert trimmed_mean(v[torch.randperm(10)], 0.2).item() == 4.5  # order does not matter
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="trim fraction"):
            trimmed_mean(v, bad)


def test_cd_term_clamps_at_minus_beta():
    e_data = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    e_neg = torch.tensor([3.0, 5.0, 100.0], dtype=torch.float64, requires_grad=True)
    # unclamped: 0.5 - 36; trimming a third drops 100: 0.5 - 4
    assert cd_term(e_data, e_neg).item() == pytest.approx(0.5 - 36.0, abs=1e-12)
    assert cd_term(e_data, e_neg, alpha=1 / 3 + 1e-9).item() == pytest.approx(-3.5, abs=1e-12)
    clamped = cd_term(e_data, e_neg, alpha=1 / 3 + 1e-9, beta=2.0)
    assert clamped.item() == -2.0
    clamped.backward()
    # Below the clamp the term is constant: no gradient flows to either set of energies.
    assert torch.equal(e_data.grad, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(e_neg.grad, torch.zeros(3, dtype=torch.float64))
    # Above -beta the clamp is inactive.
    assert cd_term(torch.tensor([4.0]), torch.tensor([3.0]), beta=0.5).item() == 1.0


def test_energy_matching_loss_equals_the_separate_parts():
    V = mlp(0)
    x0, x1, t = batch(5, b=8)
    g = torch.Generator().manual_seed(9)
    x_data = torch.randn(8, 2, generator=g, dtype=torch.float64) + 2
    x_neg = torch.randn(10, 2, generator=g, dtype=torch.float64)
    path = linear_path(x0, x1, t)
    kw = dict(tau_star=0.8, lambda_cd=0.7, alpha=0.2, beta=None)

    out = energy_matching_loss(V, path, x_data, x_neg, **kw)
    grads_one = torch.autograd.grad(out.loss, list(V.parameters()))

    fl = flow_loss(V, path, tau_star=0.8)
    cd = cd_loss(V, x_data, x_neg, alpha=0.2, beta=None)
    separate = fl + 0.7 * cd
    grads_sep = torch.autograd.grad(separate, list(V.parameters()))
    # One concatenated forward pass versus three separate ones: the same float64 numbers
    # up to matmul blocking (a few ulps).
    torch.testing.assert_close(out.loss, separate, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads_one, grads_sep):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert out.flow == pytest.approx(fl.item(), rel=1e-10)
    assert out.cd == pytest.approx(cd.item(), rel=1e-10)
    assert out.energy_data == pytest.approx(V(x_data).mean().item(), rel=1e-10)
    assert out.energy_negative == pytest.approx(V(x_neg).mean().item(), rel=1e-10)
    # The CD term really contributes (the test could fail if it were dropped).
    assert abs(0.7 * cd.item()) > 1e-3


def test_flow_scale_zero_is_contrastive_divergence_only():
    V = mlp(1)
    x0, x1, t = batch(6)
    g = torch.Generator().manual_seed(1)
    x_data, x_neg = torch.randn(6, 2, generator=g, dtype=torch.float64), 3 * torch.randn(6, 2, generator=g, dtype=torch.float64)
    out = energy_matching_loss(V, linear_path(x0, x1, t), x_data, x_neg, lambda_cd=2.0, flow_scale=0.0)
    expected = 2.0 * cd_loss(V, x_data, x_neg)
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    assert out.flow == 0.0
    ga = torch.autograd.grad(out.loss, list(V.parameters()))
    gb = torch.autograd.grad(expected, list(V.parameters()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_without_cd_inputs_the_loss_is_the_flow_loss():
    V = mlp(2)
    x0, x1, t = batch(7)
    path = linear_path(x0, x1, t)
    for out in (
        energy_matching_loss(V, path, tau_star=0.9, lambda_cd=1.0),  # no CD batches
        energy_matching_loss(V, path, torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64), tau_star=0.9, lambda_cd=0.0),
    ):
        torch.testing.assert_close(out.loss, flow_loss(V, path, tau_star=0.9), rtol=1e-10, atol=1e-12)
        assert out.cd != out.cd  # NaN: no CD was computed


def test_loss_backpropagates_to_every_weight():
    V = mlp(3)
    x0, x1, t = batch(8)
    g = torch.Generator().manual_seed(2)
    x_data, x_neg = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    out = energy_matching_loss(V, linear_path(x0, x1, t), x_data, x_neg, lambda_cd=1.0)
    out.loss.backward()
    named = dict(V.named_parameters())
    for name, p in named.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for name in ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight"):
        assert named[name].grad.abs().sum() > 0, name
    # V is defined up to a constant: neither -grad V nor mean V(data) - mean V(neg) sees
    # the output bias, so its gradient is exactly zero.
    assert torch.equal(named["4.bias"].grad, torch.zeros(1, dtype=torch.float64))


def test_every_parameter_joins_the_backward_pass_in_phase_one():
    # DistributedDataParallel fails when a parameter gets no gradient. The flow loss only
    # sees grad V, which does not depend on the output bias, so the loss must still
    # connect every parameter (with a zero gradient) - the cheap, single-process form of
    # the two-process check in test_distributed.py.
    V = mlp(5)
    x0, x1, t = batch(10)
    out = energy_matching_loss(V, linear_path(x0, x1, t), tau_star=0.8)
    out.loss.backward()
    for name, p in V.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient: DDP would fail"
    assert torch.equal(V[4].bias.grad, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(out.loss, flow_loss(V, linear_path(x0, x1, t), tau_star=0.8), **TIGHT)


def test_flow_loss_gradient_matches_finite_differences():
    # The flow loss differentiates through grad_x V (create_graph=True); gradcheck compares
    # that double backward with central finite differences in float64.
    V = mlp(4)
    x0, x1, t = batch(9, b=4)
    path = linear_path(x0, x1, t)
    names = [n for n, _ in V.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in V.parameters())

    class Bound(nn.Module):
        def __init__(self, ps):
            super().__init__()
            self.ps = ps

        def forward(self, x):
            return functional_call(V, dict(zip(names, self.ps)), (x,))

    def f(*ps):
        return flow_loss(Bound(ps), path, tau_star=0.7)

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_potential_must_return_one_energy_per_sample():
    class Bad(nn.Module):
        def forward(self, x):
            return x  # (B, 2)

    x0, x1, t = batch(0)
    with pytest.raises(ValueError, match="must return"):
        flow_loss(Bad(), linear_path(x0, x1, t))


def test_flow_loss_on_a_constrained_space_uses_the_projected_gradient():
    """V(x) = <C, x> with an asymmetric C: on symmetric adjacency matrices only P C moves a
    state, so the loss is mean((-P C - (x1 - x0))^2); the ambient C would add |(I - P) C|^2."""
    import energyflow as ef
    from energyflow.training.losses import flow_loss, linear_path

    g = torch.Generator().manual_seed(0)
    space = ef.SymmetricMasked(4, mask=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    c = torch.randn(1, 4, 4, generator=g, dtype=torch.float64)

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * c).sum((1, 2))

    x0, x1 = space.noise(5, generator=g, dtype=torch.float64), space.noise(5, generator=g, dtype=torch.float64)
    path = linear_path(x0, x1, torch.rand(5, generator=g, dtype=torch.float64))
    expected = ((-space.project(c) - (x1 - x0)) ** 2).reshape(5, -1).mean(1).mean()
    assert torch.allclose(flow_loss(Linear(), path, space=space), expected)
    ambient = ((-c - (x1 - x0)) ** 2).reshape(5, -1).mean(1).mean()
    assert not torch.allclose(flow_loss(Linear(), path), expected) and torch.allclose(flow_loss(Linear(), path), ambient)
    out = energy_matching_loss(Linear(), path, space=space)
    assert out.flow == pytest.approx(float(expected))


# --- pytree states ---------------------------------------------------------------------------
def test_losses_on_a_pytree_state_match_the_flattened_hand_computation():
    """On a dict state the flow loss is the mean over every coordinate of every leaf:
    with V linear in the coordinates the gradient is the constant weight vector."""
    from graph_helpers import graph_space, random_graphs

    g = torch.Generator().manual_seed(0)
    x1 = random_graphs(6, g, dtype=torch.float64)
    x0 = graph_space().noise(None, generator=g, like=x1)
    t = torch.rand(6, generator=g, dtype=torch.float64)
    wx = torch.randn(4, 2, generator=g, dtype=torch.float64)
    wa = torch.randn(4, 4, generator=g, dtype=torch.float64)

    class Linear(nn.Module):
        def forward(self, s):
            return (s["x"] * wx).sum((1, 2)) + (s["adj"] * wa).sum((1, 2))

    path = linear_path(x0, x1, t)
    assert path.xt["mask"] is x1["mask"]
    assert torch.allclose(path.xt["adj"], (1 - t)[:, None, None] * x0["adj"] + t[:, None, None] * x1["adj"])
    loss = flow_loss(Linear(), path)
    vx, va = x1["x"] - x0["x"], x1["adj"] - x0["adj"]
    per = torch.cat([(-wx - vx).pow(2).reshape(6, -1), (-wa - va).pow(2).reshape(6, -1)], 1).mean(1)
    assert torch.allclose(loss, per.mean())
    # On the space only the projected gradient counts (what samplers descend).
    space = graph_space()
    projected = flow_loss(Linear(), path, space=space)
    ga = space.tangent({"x": wx.expand(6, 4, 2), "adj": wa.expand(6, 4, 4), "mask": x1["mask"]})
    per = torch.cat([(-ga["x"] - vx).pow(2).reshape(6, -1), (-ga["adj"] - va).pow(2).reshape(6, -1)], 1).mean(1)
    assert torch.allclose(projected, per.mean())
    out = energy_matching_loss(Linear(), path, x1, x0, lambda_cd=1.0, space=space)
    assert torch.allclose(out.loss, projected + (Linear()(x1).mean() - Linear()(x0).mean()))
