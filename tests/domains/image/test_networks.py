"""Image potentials: the CPU convnet and the paper-scale UNet + ViT CIFAR-10 potential."""

from __future__ import annotations

import time

import pytest
import torch

from energyflow.domains.image.networks import (
    CIFAR10_POTENTIAL_DEFAULTS,
    ConvPotential,
    UNetViTPotential,
    cifar10_potential,
    count_parameters,
)

SMALL = dict(
    base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, vit_dim=16, vit_depth=2, vit_heads=2
)


def test_count_parameters():
    net = torch.nn.Linear(4, 3)
    assert count_parameters(net) == 15
    net.bias.requires_grad_(False)
    assert count_parameters(net) == 12 and count_parameters(net, trainable_only=False) == 15


def test_conv_potential_shapes_and_errors():
    net = ConvPotential(3, 32, hidden=8, depth=3)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    with pytest.raises(ValueError, match="32x32"):
        net(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        ConvPotential(1, 8, depth=4)


def test_cifar10_potential_at_paper_scale():
    """About 50M parameters; forward and input gradient on a (2, 3, 32, 32) batch on CPU.

    Measured: 51,417,473 parameters; forward + backward about 2 s at one thread.
    """
    torch.manual_seed(0)
    net = cifar10_potential()
    n = count_parameters(net)
    assert 40_000_000 <= n <= 60_000_000, n
    assert n == 51_417_473
    assert net.output_scale == 1000.0
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    start = time.perf_counter()
    v = net(x)
    (g,) = torch.autograd.grad(v.sum(), x)
    elapsed = time.perf_counter() - start
    assert v.shape == (2, 1) and torch.isfinite(v).all()
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    assert elapsed < 60.0, elapsed  # a sanity bound only; about 2 s on one idle core


def test_small_unet_vit_double_backward_reaches_parameters():
    """Energy Matching's loss is a function of grad_x V, so the net needs a double backward.

    Every parameter except the two biases whose effect on V is a constant (the final
    LayerNorm's and the output layer's) receives a gradient.
    """
    torch.manual_seed(0)
    net = cifar10_potential(**SMALL)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    v = net(x)
    (g,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    g.pow(2).mean().backward()
    missing = sorted(k for k, p in net.named_parameters() if p.grad is None)
    assert missing == ["head.norm.bias", "head.out.bias"]
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    # one image's energy does not depend on the rest of its batch (GroupNorm, no BatchNorm)
    torch.testing.assert_close(net(x[:1]), v[:1], rtol=1e-4, atol=1e-3)


def test_unet_vit_options():
    net = cifar10_potential(**SMALL, pool="mean", output_scale=1.0, patch_size=8, trunk_out_channels=4)
    assert isinstance(net, UNetViTPotential)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    small_gray = {**SMALL, "channel_mults": (1, 2, 2)}
    gray = UNetViTPotential(in_channels=1, image_size=8, **small_gray, patch_size=2)
    assert gray(torch.zeros(2, 1, 8, 8)).shape == (2, 1)
    with pytest.raises(TypeError, match="vit_width"):
        cifar10_potential(vit_width=3)
    with pytest.raises(ValueError, match="groups"):
        cifar10_potential(**{**SMALL, "groups": 3})
    with pytest.raises(ValueError, match="heads"):
        cifar10_potential(**{**SMALL, "vit_heads": 3})
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(2, 1, 32, 32))
    assert set(CIFAR10_POTENTIAL_DEFAULTS) <= set(UNetViTPotential.__init__.__code__.co_varnames)
