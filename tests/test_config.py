"""Config loading, overrides and validation errors."""

from __future__ import annotations

import pytest
import yaml

from rcs.config import RunConfig, load_config, save_config, to_dict
from rcs.config.loader import from_dict, parse_override
from rcs.errors import ConfigError


def test_defaults_validate_and_roundtrip(tmp_path):
    cfg = load_config(None)
    assert isinstance(cfg, RunConfig)
    path = save_config(cfg, tmp_path / "c.yaml")
    again = load_config(path)
    assert to_dict(again) == to_dict(cfg)


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "train:\n  epochs: 7\n  lr: 2.0\nselection:\n  fraction: 0.1\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  lr: 3.0\n")
    cfg = load_config(tmp_path / "child.yaml", ["train.attack.eps=4/255", "model.blocks=[1,2]",
                                                 "selection.method=random"])
    assert cfg.train.epochs == 7 and cfg.train.lr == 3.0  # child wins, base kept
    assert cfg.selection.fraction == 0.1
    assert cfg.train.attack.eps == pytest.approx(4 / 255)
    assert cfg.model.blocks == [1, 2]
    assert cfg.selection.method == "random"


def test_override_parsing():
    assert parse_override("a.b=5") == (["a", "b"], 5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.epochs")


@pytest.mark.parametrize("override, message", [
    ("train.epoch=5", r"unknown config key 'train.epoch'.*Did you mean 'train.epochs'"),
    ("tran.epochs=5", r"unknown config key 'tran'.*Did you mean 'train'"),
    ("selection.fraction=1.5", r"fraction=1.5 must be in \(0, 1\]"),
    ("selection.fraction=0", r"fraction=0.0 must be in \(0, 1\]"),
    ("selection.train_attack_steps=-1", r"selection.train_attack_steps must be >= 0"),
    ("train.epochs=abc", r"train.epochs='abc' must be an integer"),
    ("train.epochs=2.5", r"must be an integer"),
    ("train.lr=fast", r"train.lr='fast' must be a number"),
    ("train.channels_last=maybe", r"must be true or false"),
    ("augment.crop_scale=[0.1]", r"exactly 2 entries"),
    ("train.optimizer=adam", r"train.optimizer='adam' is not one of lars, sgd"),
    ("data.name=cifar10", r"data.root is empty"),
    ("train.epochs.x=1", r"train.epochs=\{'x': 1\} must be an integer"),
])
def test_config_errors_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(tmp_path / "list.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_every_shipped_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.rglob("*.yaml"))
    assert files, "configs/ must ship YAML files"
    for f in files:
        data = yaml.safe_load(f.read_text())
        assert isinstance(data, dict), f
        cfg = load_config(f, ["data.root=/tmp/x"] if data.get("data", {}).get("name", "synthetic")
                          != "synthetic" and not data.get("data", {}).get("root") else [])
        assert cfg.out_dir


def test_from_dict_nested_type_errors():
    with pytest.raises(ConfigError, match="train must be a mapping"):
        from_dict(RunConfig, {"train": 5})


def test_rcs_needs_a_validation_split():
    with pytest.raises(ConfigError, match="needs a validation split U"):
        load_config(None, ["selection.method=rcs", "data.val_fraction=0"])
    assert load_config(None, ["selection.method=random", "data.val_fraction=0"])
