"""The string registry: names resolve (case and dash insensitive), unknown names list
the choices, registration of objects and paths."""

from __future__ import annotations

import pytest

import energyflow as ef
from energyflow.registry import SAMPLERS, SCHEDULES, SPACES, Registry, RegistryError


@pytest.mark.parametrize("registry, name, obj", [
    (SAMPLERS, "flow", "GradientFlow"),
    (SAMPLERS, "langevin", "Langevin"),
    (SAMPLERS, "MALA", "MALA"),
    (SAMPLERS, "hmc", "HMC"),
    (SAMPLERS, "nuts", "PyroNUTS"),
    (SCHEDULES, "energy-matching", "EnergyMatchingSchedule"),
    (SCHEDULES, "constant", "ConstantSchedule"),
    (SPACES, "euclidean", "Euclidean"),
    (SPACES, "symmetric_masked", "SymmetricMasked"),
    (SPACES, "zero_com", "ZeroCenterOfMass"),
])
def test_names_resolve_to_the_public_classes(registry, name, obj):
    assert registry.get(name) is getattr(ef, obj)
    assert name in registry


def test_unknown_name_lists_choices():
    with pytest.raises(RegistryError) as info:
        SAMPLERS.get("gibbs")
    msg = str(info.value)
    assert "unknown sampler 'gibbs'" in msg
    for name in ("flow", "hmc", "langevin", "mala", "nuts"):
        assert name in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(RegistryError, match="must be a string"):
        SAMPLERS.get(3)
    assert 3 not in SAMPLERS


def test_build_and_register():
    mala = SAMPLERS.build("mala", step_size=0.2)
    assert isinstance(mala, ef.MALA) and mala.step_size == 0.2
    reg = Registry("thing")
    reg.register("My-Thing", ef.Langevin)
    reg.register("path", "energyflow.schedule:ConstantSchedule")
    assert reg.get("my_thing") is ef.Langevin
    assert reg.get("PATH") is ef.ConstantSchedule
    assert reg.names() == ["my_thing", "path"] and list(reg) == reg.names()
    assert "thing" in repr(reg)


def test_register_domain_declares_name_class_and_preset_in_one_place():
    from energyflow.registry import DOMAINS, domain_default_preset, register_domain, unregister_domain

    assert {"image", "toy"} <= set(DOMAINS.names())
    assert (domain_default_preset("toy"), domain_default_preset("Image")) == ("toy", "mnist")
    with pytest.raises(RegistryError, match="default_preset of domain 'x'"):
        register_domain("x", "energyflow.domains.toy:ToyDomain", default_preset="")
    assert "x" not in DOMAINS
    register_domain("Toy-2", "energyflow.domains.toy:ToyDomain", default_preset="toy")
    try:
        assert DOMAINS.get("toy_2").__name__ == "ToyDomain" and domain_default_preset("toy-2") == "toy"
    finally:
        unregister_domain("toy_2")
    assert "toy_2" not in DOMAINS
    with pytest.raises(RegistryError, match="unknown domain .toy_2.; choose one of: graph, image, "):
        domain_default_preset("toy_2")
