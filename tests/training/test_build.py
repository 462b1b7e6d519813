"""Builders: a config's device, domain and network, from explicit options only."""

from __future__ import annotations

import pytest
import torch

from energyflow.domains.toy import ToyDomain
from energyflow.errors import DeviceError
from energyflow.registry import register_domain, unregister_domain
from energyflow.training.build import build_domain, build_network, resolve_device
from energyflow.training.config import ConfigError, TrainConfig


def test_build_domain_passes_the_fields_and_the_options():
    d = build_domain(TrainConfig(domain="toy", dataset="rings", source="checkerboard",
                                 domain_options={"test_size": 40}))
    assert isinstance(d, ToyDomain) and (d.dataset, d.source, d.test_size) == ("rings", "checkerboard", 40)
    assert d.test_data().shape == (40, 2)


def test_a_value_the_domain_refuses_is_a_config_error():
    with pytest.raises(ConfigError, match="toy domain refuses its options .*test_size must be >= 2"):
        build_domain(TrainConfig(domain="toy", domain_options={"test_size": 1}))
    with pytest.raises(ConfigError, match="unknown toy data set 'nope'"):
        build_domain(TrainConfig(domain="toy", dataset="nope"))


class Fixed(ToyDomain):
    """A domain that takes no options at all, not even dataset and source."""

    options = ()
    network_options = ("hidden",)

    def __init__(self) -> None:
        super().__init__("spirals")

    def default_network(self, hidden: int = 4):
        return super().default_network(hidden=hidden, depth=1)


@pytest.fixture
def fixed_domain():
    register_domain("fixed", Fixed, default_preset="toy")
    yield
    unregister_domain("fixed")


def test_a_domain_gets_only_the_options_it_declares(fixed_domain):
    cfg = TrainConfig(domain="fixed", dataset="moons", hidden=6, depth=9)  # dataset, depth: not its options
    domain = build_domain(cfg)
    assert isinstance(domain, Fixed) and domain.dataset == "spirals"
    assert build_network(domain, cfg)[0].out_features == 6
    with pytest.raises(ConfigError, match=r"fixed domain has no option\(s\) test_size; its options are: none"):
        TrainConfig(domain="fixed", domain_options={"test_size": 9})
    with pytest.raises(ConfigError, match="has no option.* depth; its options are: hidden"):
        TrainConfig(domain="fixed", network_options={"depth": 2})


def test_build_network_is_seeded_and_leaves_the_global_rng_alone():
    cfg = TrainConfig(domain="toy", hidden=8, depth=2, network_options={"depth": 1}, seed=4)
    domain = build_domain(cfg)
    state = torch.get_rng_state()
    a, b = build_network(domain, cfg), build_network(domain, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    assert [m.out_features for m in a if hasattr(m, "out_features")] == [8, 1]  # depth 1 from the options
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_named_network_gets_its_options_and_no_output_scale():
    cfg = TrainConfig(domain="image", dataset="digits", network="unet_vit", output_scale=1000.0, network_options=dict(
        base_channels=8, channel_mults=[1, 2], num_res_blocks=1, groups=4, vit_dim=16, vit_depth=1, vit_heads=2))
    net = build_network(build_domain(cfg), cfg)
    assert net.output_scale == 1.0  # the trainer's Potential applies cfg.output_scale
    assert net.trunk.out_channels == 8 and len(net.head.layers) == 1
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    with pytest.raises(ConfigError, match="network_options .* are refused"):
        bad = TrainConfig(domain="image", dataset="digits", network="unet_vit", network_options={"pool": "max"})
        build_network(build_domain(bad), bad)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")
