"""Config resolution: defaults <- YAML <- overrides, with types, ranges and unknown keys checked."""
from pathlib import Path

import pytest

from gan_ssl.config import Config, parse_override
from gan_ssl.core.errors import ConfigError
from gan_ssl.families.resolve import resolve

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


def test_defaults_and_overrides():
    cfg = resolve(None, ["train.steps=7", "train.lr_d=1e-4", "model.self_modulation=false", "seed=3", "data.name=folder:/x"])
    assert isinstance(cfg, Config)
    assert (cfg.train.steps, cfg.train.lr_d, cfg.model.self_modulation, cfg.seed) == (7, 1e-4, False, 3)
    assert cfg.data.name == "folder:/x"
    assert resolve(None, ["train.lr_g=1"]).train.lr_g == 1.0  # ints are accepted for floats


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_resolve(path):
    cfg = resolve(path)
    assert cfg.data.name == "fashion-mnist"
    assert cfg.to_dict() == resolve(cfg.to_dict()).to_dict()  # round trip through a dict (checkpoints)


def test_ssgan_config_uses_paper_weights():
    cfg = resolve(Path(__file__).parent.parent / "configs" / "ssgan_fmnist.yaml")
    assert (cfg.aux.rotation.d_weight, cfg.aux.rotation.g_weight) == (1.0, 0.2)
    assert cfg.model.name == "dcgan" and (cfg.aux.rotation.protocol, cfg.aux.rotation.every) == ("one", 4)
    assert cfg.train.minutes > 0  # the main job trains on a wall-clock budget


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.stepz=3", "unknown config key 'train.stepz'"),
        ("nope=1", "unknown config key 'nope'"),
        ("train.steps=abc", "'train.steps' must be int"),
        ("train.steps=1.5", "'train.steps' must be int"),
        ("model.self_modulation=3", "must be bool"),
        ("train.steps=0", "out of range"),
        ("train.batch_size=-4", "out of range"),
        ("train.lr_d=.nan", "out of range"),
        ("loss.adversarial=wgan", "must be one of hinge, ns"),
        ("model.name=biggan", "is not a model"),
        ("train.device=tpu", "train.device"),
        ("train=3", "must be a mapping"),
        ("steps", "must look like key=value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        resolve(None, [override])


def test_nothing_to_learn_is_rejected():
    with pytest.raises(ConfigError, match="nothing to learn"):
        resolve(None, ["loss.d_adv_weight=0"])


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(bad)
    bad.write_text("train:\n  warmup: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.warmup'"):
        resolve(bad)


def test_parse_override_reads_yaml_values():
    assert resolve(None, ["train.lr_d=1e-4"]).train.lr_d == 1e-4
    assert parse_override("x=true") == ("x", True)
    assert parse_override("x=folder:/data/a=b") == ("x", "folder:/data/a=b")


def test_keys_the_model_does_not_take_are_errors():
    with pytest.raises(ConfigError, match="unknown config key 'model.self_modulation' for model 'dcgan'.*model.spectral_norm"):
        resolve(None, ["model.name=dcgan", "model.self_modulation=false"])
    with pytest.raises(ConfigError, match="unknown config key 'model.spectral_norm' for model 'sngan'"):
        resolve(None, ["model.spectral_norm=true"])
    assert resolve(None, ["model.name=dcgan", "model.spectral_norm=true"]).model.spectral_norm is True
    assert "self_modulation" not in resolve(None, ["model.name=dcgan"]).to_dict()["model"]


@pytest.mark.parametrize("override,message", [
    ("family=nope", "'family' = 'nope' is not a family"),
    ("model.g_width=0", "'model.g_width' = 0 is out of range"),
    ("aux.rotation.protocol=half", "must be one of all, split, one"),
    ("train.ema_ramp=cosine", "must be one of step, none"),
    ("train.lr_decay=cosine", "must be one of none, linear"),
    ("train.lr_decay_start=1.5", "lr_decay_start"),
    ("data.storage=disk", "must be one of auto, memory, stream"),
    ("train.minutes=-1", "out of range"),
])
def test_bad_family_model_and_new_keys(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        resolve(None, [override])


def test_family_defaults_to_the_models():
    cfg = resolve(None, ["model.name=dcgan"])
    assert cfg.family == "gan" and cfg.model.name == "dcgan" and cfg.loss.adversarial == "hinge"


def test_non_utf8_config_is_a_one_line_error(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("train:\n  steps: 5  # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        resolve(bad)
    from click.testing import CliRunner

    from gan_ssl.cli import cli

    r = CliRunner().invoke(cli, ["train", str(bad), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output
