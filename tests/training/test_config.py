"""Training configs: presets, files, overrides, the saved config.toml, validation errors."""

from __future__ import annotations

import attrs
import pytest

from energyflow.training.config import PRESETS, ConfigError, TrainConfig, resolve_config, save_config

# DESIGN.md section 3, table of defaults (field names of TrainConfig).
DESIGN_TABLE = {
    "toy": dict(tau_star=0.8, step_size=0.01, num_langevin_steps=200, eps_max=0.15, lambda_cd=2.0,
                trim_alpha=0.0, clamp_beta=None, batch_size=128, lr=1e-4, ema_decay=None),
    "mnist": dict(sample_t_end=2.0, tau_star=1.0, step_size=0.025, num_langevin_steps=75, eps_max=0.1,
                  lambda_cd=1e-3, trim_alpha=0.0, clamp_beta=0.05, batch_size=128, lr=1e-4,
                  ema_decay=0.999, ema_decay_phase2=0.99),
    "cifar10": dict(sample_t_end=3.25, tau_star=1.0, step_size=0.01, num_langevin_steps=200, eps_max=0.01,
                    lambda_cd=1e-3, trim_alpha=0.1, clamp_beta=0.02, batch_size=128, lr=1.2e-3,
                    ema_decay=0.9999, ema_decay_phase2=0.99, output_scale=1000.0),
    "aav": dict(domain="protein", sample_t_end=1.7, tau_star=0.9, step_size=0.01, num_langevin_steps=200, eps_max=0.1,
                lambda_cd=1e-4, clamp_beta=1.0, batch_size=128, lr=1e-4, ema_decay=0.999),
}


RUNNABLE = sorted(PRESETS)


@pytest.mark.parametrize("preset", sorted(DESIGN_TABLE))
def test_presets_match_the_design_table(preset):
    for field, value in DESIGN_TABLE[preset].items():
        assert PRESETS[preset][field] == value, f"{preset}.{field}"
    if preset in RUNNABLE:
        cfg = resolve_config(preset)
        for field, value in DESIGN_TABLE[preset].items():
            assert getattr(cfg, field) == value, f"{preset}.{field}"
        # Shared by every preset: Adam (0.9, 0.95) and gradient clip 1.0.
        assert cfg.betas == (0.9, 0.95) and cfg.grad_clip == 1.0


def test_every_preset_names_its_domain():
    assert all("domain" in values for values in PRESETS.values())


@pytest.mark.parametrize("preset, task, t_end", [("aav", "medium", 1.7), ("aav-medium", "medium", 1.7),
                                                 ("aav_hard", "hard", 1.3)])
def test_the_aav_presets_train_the_protein_domain_on_their_task(preset, task, t_end):
    """It used to train the toy domain on moons (the preset named no domain), then was refused."""
    cfg = resolve_config(preset)
    assert (cfg.domain, cfg.dataset, cfg.sample_t_end, cfg.tau_star, cfg.eps_max) == ("protein", task, t_end, 0.9, 0.1)


@pytest.mark.parametrize("domain, dataset, tau_star", [("toy", "moons", 0.8), ("image", "digits", 1.0)])
def test_a_domain_alone_takes_its_default_preset(domain, dataset, tau_star):
    cfg = resolve_config(overrides={"domain": domain})
    assert (cfg.domain, cfg.dataset, cfg.tau_star) == (domain, dataset, tau_star)


def test_a_preset_for_another_domain_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="image domain, not 'toy'"):
        resolve_config("mnist", overrides={"domain": "toy"})
    path = tmp_path / "c.toml"
    path.write_text('preset = "toy"\ndomain = "image"\n')
    with pytest.raises(ConfigError, match="preset key"):
        resolve_config(file=path)


@pytest.mark.parametrize(
    "field, value",
    [("steps", 1.7), ("batch_size", True), ("hidden", 2.9), ("eps_max", False), ("phase1_steps", 0.5),
     ("seed", "1.5"), ("lr", "fast"), ("betas", [False, 0.9]), ("dataset", 3), ("device", "gpu0")],
)
def test_values_are_never_changed_silently(field, value):
    """int(1.7) == 1 and float(False) == 0.0: such values are errors naming the field."""
    with pytest.raises(ConfigError, match=field):
        resolve_config("toy", overrides={field: value})


def test_exact_conversions_are_accepted():
    cfg = resolve_config("toy", overrides=dict(steps=1e3, batch_size="64", lr="1e-4", hidden=32.0))
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.hidden) == (1000, 64, 1e-4, 32)
    assert all(type(v) is int for v in (cfg.steps, cfg.batch_size, cfg.hidden))


# Presets of domains the paper does not cover (their values are this project's, set by benchmarks).
OWN_PRESETS = {"community_small", "planar", "sbm", "grid", "planar_gpu", "sbm_gpu", "qm9", "qm9_gpu", "aav_medium",
               "aav_hard"}


def test_every_preset_is_covered():
    assert set(PRESETS) == set(DESIGN_TABLE) | OWN_PRESETS


def test_toy_preset_is_the_paper_demo():
    cfg = resolve_config("toy")
    assert (cfg.domain, cfg.dataset, cfg.source) == ("toy", "moons", "eight_gaussians")


def test_toml_and_yaml_files_with_precedence(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "mnist"\neps_max = 0.2\nsteps = 77\nbetas = [0.8, 0.9]\nclamp_beta = "none"\n')
    yaml = tmp_path / "c.yaml"
    yaml.write_text("preset: mnist\neps_max: 0.2\nsteps: 77\nbetas: [0.8, 0.9]\nclamp_beta: null\n")
    for path in (toml, yaml):
        cfg = resolve_config(file=path, overrides={"steps": 5, "lr": None})
        assert cfg.steps == 5  # override beats file
        assert cfg.eps_max == 0.2  # file beats preset (mnist: 0.1)
        assert cfg.betas == (0.8, 0.9)
        assert cfg.clamp_beta is None  # file's none beats the preset's 0.05
        assert cfg.num_langevin_steps == 75 and cfg.lambda_cd == 1e-3  # from the file's preset
        assert cfg.lr == 1e-4  # None overrides are ignored
    # An explicit preset argument wins over the file's preset key.
    assert resolve_config("cifar10", file=toml).output_scale == 1000.0


def test_file_without_preset_uses_its_domains_default_preset(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("steps: 9\n")
    assert resolve_config(file=path) == resolve_config("toy", overrides={"steps": 9})
    path.write_text("steps: 9\ndomain: image\n")
    assert resolve_config(file=path) == resolve_config("mnist", overrides={"steps": 9})


@pytest.mark.parametrize("preset", RUNNABLE)
def test_saved_config_round_trips(tmp_path, preset):
    cfg = resolve_config(preset, overrides=dict(steps=12, phase1_steps="none", ema_decay_phase2="none",
                                                dataset="checkerboard", lr=3.5e-5))
    assert cfg.phase1_steps is None and cfg.ema_decay_phase2 is None
    save_config(cfg, tmp_path / "config.toml")
    again = resolve_config(file=tmp_path / "config.toml")
    assert again == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no temp file left


def test_round_trip_of_non_default_optionals(tmp_path):
    cfg = resolve_config("toy", overrides=dict(phase1_steps=3, steps=10, grad_clip=None, ema_decay=0.5,
                                               clamp_beta=1e-7, seed=-3, device="cpu"))
    save_config(cfg, tmp_path / "config.toml")
    assert resolve_config(file=tmp_path / "config.toml") == cfg


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", -1.0), ("lr", 0), ("lr", float("nan")), ("steps", 0), ("steps", "abc"), ("batch_size", -4),
        ("tau_star", 1.5), ("tau_star", "x"), ("eps_max", -0.1), ("trim_alpha", 1.0), ("clamp_beta", -1.0),
        ("ema_decay", 1.0), ("betas", [0.9]), ("betas", 5), ("betas", [0.9, 1.0]), ("sample_method", "rk4"),
        ("coupling", "greedy"), ("domain", "nope"), ("phase1_steps", 99), ("num_langevin_steps", 0),
        ("grad_clip", "inf"), ("lambda_cd", -1),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        resolve_config("toy", overrides={field: value, "steps": 20} if field != "steps" else {field: value})
    assert field in str(info.value)


def test_unknown_fields_and_presets_are_named(tmp_path):
    with pytest.raises(ConfigError, match="learning_rate"):
        resolve_config("toy", overrides={"learning_rate": 0.1})
    path = tmp_path / "c.toml"
    path.write_text("epsmax = 0.1\n")
    with pytest.raises(ConfigError, match="epsmax"):
        resolve_config(file=path)
    with pytest.raises(ConfigError, match="imagenet"):
        resolve_config("imagenet")


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(file=tmp_path / "missing.toml")
    bad = tmp_path / "c.toml"
    bad.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        resolve_config(file=bad)
    lst = tmp_path / "c.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="table"):
        resolve_config(file=lst)
    ini = tmp_path / "c.ini"
    ini.write_text("[x]\n")
    with pytest.raises(ConfigError, match=r"\.toml"):
        resolve_config(file=ini)


def test_config_is_frozen_and_warmup_defaults_to_half():
    cfg = TrainConfig(steps=11)
    assert cfg.warmup_steps == 5
    assert attrs.evolve(cfg, phase1_steps=0).warmup_steps == 0
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.steps = 3  # type: ignore[misc]


def test_image_presets_name_their_domain_and_network():
    from energyflow.training import resolve_config

    mnist = resolve_config("mnist")
    assert (mnist.domain, mnist.dataset, mnist.network) == ("image", "digits", None)
    cifar = resolve_config("cifar10")
    assert (cifar.domain, cifar.dataset, cifar.network, cifar.output_scale) == ("image", "cifar10", "unet_vit", 1000.0)


def test_unknown_network_is_named():
    from energyflow.training import ConfigError, resolve_config

    with pytest.raises(ConfigError, match="network"):
        resolve_config("toy", overrides={"network": "resnet9000"})


# --- domain_options / network_options ------------------------------------------------------
def test_unknown_domain_option_names_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        resolve_config("toy", overrides={"domain_options": {"split_seed": 1}})
    msg = str(info.value)
    assert "toy domain has no option(s) split_seed" in msg and "dataset, source, test_size" in msg
    # the same option is valid for images
    assert resolve_config("mnist", overrides={"domain_options": {"split_seed": 1}}).domain_options == {"split_seed": 1}


def test_unknown_network_option_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"default network of the toy domain has no option\(s\) width; "
                                          r"its options are: hidden, depth"):
        resolve_config("toy", overrides={"network_options": {"width": 3}})
    with pytest.raises(ConfigError, match=r"network 'unet_vit' has no option\(s\) hidden; its options are: in_channels"):
        resolve_config("cifar10", overrides={"network_options": {"hidden": 3}})
    with pytest.raises(ConfigError, match="top-level output_scale"):
        resolve_config("cifar10", overrides={"network_options": {"output_scale": 3.0}})


@pytest.mark.parametrize("table", ["domain_options", "network_options"])
@pytest.mark.parametrize("value, needle", [
    ("moons", "table of options"), ({"a b": 1}, "identifiers"), ({"test_size": None}, "no null"),
    ({"test_size": {"x": 1}}, "string, number, boolean"), ({"test_size": float("inf")}, "finite"),
    ({"test_size": [1, [2]]}, r"test_size\[1\]"),
])
def test_option_tables_hold_plain_values(table, value, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**{table: value})


def test_dataset_and_source_in_domain_options_move_to_the_fields():
    cfg = TrainConfig(domain="toy", dataset="moons", domain_options={"dataset": "rings", "test_size": 50})
    assert cfg.dataset == "rings" and cfg.domain_options == {"test_size": 50}
    assert TrainConfig(domain_options={"source": "checkerboard"}).source == "checkerboard"
    with pytest.raises(ConfigError, match="dataset must be a non-empty string"):
        TrainConfig(domain_options={"dataset": ""})
    # across levels the later one wins whichever spelling it used; one level giving both is an error
    assert resolve_config("toy", overrides={"domain_options": {"dataset": "spirals"}}).dataset == "spirals"
    with pytest.raises(ConfigError, match="dataset is given twice"):
        resolve_config("toy", overrides={"dataset": "rings", "domain_options": {"dataset": "spirals"}})


def test_option_tables_merge_across_preset_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "toy"\ndataset = "rings"\n[domain_options]\ntest_size = 300\n'
                    '[network_options]\ndepth = 1\n')
    cfg = resolve_config(file=path, overrides={"domain_options": {"dataset": "spirals"},
                                               "network_options": {"hidden": 8}})
    assert (cfg.dataset, cfg.domain_options, cfg.network_options) == ("spirals", {"test_size": 300},
                                                                      {"depth": 1, "hidden": 8})


def test_option_tables_round_trip_through_config_toml(tmp_path):
    cfg = resolve_config("cifar10", overrides={"network_options": {"channel_mults": [1, 2], "base_channels": 8,
                                                                   "pool": "mean", "dropout": 0.1},
                                               "domain_options": {"root": "/data/cifar \"x\"", "dequantize": True}})
    save_config(cfg, tmp_path / "config.toml")
    text = (tmp_path / "config.toml").read_text()
    assert 'network_options = {"channel_mults" = [1, 2], "base_channels" = 8' in text
    again = resolve_config(file=tmp_path / "config.toml")
    assert again == cfg and again.domain_options == {"root": '/data/cifar "x"', "dequantize": True}
    empty = resolve_config("toy")
    save_config(empty, tmp_path / "config.toml")
    assert "domain_options = {}" in (tmp_path / "config.toml").read_text()
    assert resolve_config(file=tmp_path / "config.toml") == empty


def test_domain_and_network_kwargs_fold_in_the_top_level_fields():
    from energyflow.training.config import domain_kwargs, network_kwargs

    cfg = TrainConfig(domain="image", dataset="digits", hidden=16, depth=3, network_options={"depth": 1},
                      domain_options={"split_seed": 2})
    assert domain_kwargs(cfg) == {"dataset": "digits", "source": "gaussian", "split_seed": 2}
    assert network_kwargs(cfg) == {"hidden": 16, "depth": 1}  # network_options win over the fields
    named = TrainConfig(domain="image", network="unet_vit", hidden=16, network_options={"vit_depth": 1})
    assert network_kwargs(named) == {"output_scale": 1.0, "vit_depth": 1}  # hidden/depth are the default net's


def test_default_preset_comes_from_the_registration():
    from energyflow.registry import register_domain, unregister_domain
    from energyflow.training.config import default_preset

    register_domain("toy_copy", "energyflow.domains.toy:ToyDomain", default_preset="toy")
    try:
        assert default_preset("toy_copy") == "toy"
    finally:
        unregister_domain("toy_copy")
    assert (default_preset("toy"), default_preset("image")) == ("toy", "mnist")
    assert (default_preset("graph"), default_preset("protein")) == ("community_small", "aav_medium")
    with pytest.raises(ConfigError, match="unknown domain 'rna'"):
        default_preset("rna")
