"""Methods own their settings: each method's dataclass is the config section ``train.<name>``.

A toy method defined here (one settings dataclass + one registered class, nothing else) is
configured from YAML and ``--set``, listed by ``rcs config keys``, validated, refused with close
matches, and trained through the config path; the retired flat keys are refused with the new
name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from rcs.config import describe_config, load_config, to_dict
from rcs.errors import ConfigError
from rcs.utils.metrics import read_jsonl
from tests.conftest import tiny

TINY = tiny("data.synthetic_size=64", "train.epochs=1", "train.lr=0.5",
            "train.lr_warmup_epochs=1", "selection.method=full")


@dataclass
class ToySettings:
    """``train.toy``: a test-local method's one knob."""

    scale: float = 1.0
    """Multiplies ACL's loss."""

    def validate(self) -> None:
        if self.scale <= 0:
            raise ConfigError("train.toy.scale must be > 0")


@pytest.fixture
def toy_method():
    """Register the toy method (one file's worth: settings + class) and remove it afterwards."""
    from rcs.config import sections
    from rcs.methods.acl import ACL
    from rcs.methods.base import METHODS, register_method
    from rcs.methods.registry import method_names

    method_names()  # the built-in ones first, as a config build would

    @register_method("toy", settings=ToySettings)
    class Toy(ACL):
        name = "toy"

        def embedding_loss(self, outputs):
            return self.cfg.train.toy.scale * super().embedding_loss(outputs)

    yield Toy
    METHODS.pop("toy")
    sections._SECTIONS["train"].pop("toy")


def test_toy_method_settings_through_yaml_set_keys_and_show(toy_method, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("train: {method: toy, toy: {scale: 2.5}}\n")
    cfg = load_config(path)
    assert cfg.train.method == "toy" and cfg.train.toy == ToySettings(scale=2.5)
    assert load_config(path, ["train.toy.scale=1/4"]).train.toy.scale == 0.25
    assert load_config(None).train.toy.scale == 1.0  # the dataclass default
    rows = {k: (d, doc) for k, d, doc in describe_config()}
    assert rows["train.toy.scale"] == ("1.0", "Multiplies ACL's loss.")
    shown = to_dict(cfg)["train"]
    assert shown["toy"] == {"scale": 2.5} and "sections" not in shown
    assert yaml.safe_load(yaml.safe_dump(to_dict(cfg)))["train"]["toy"]["scale"] == 2.5
    with pytest.raises(ConfigError, match=r"unknown config key 'train.toy.scal'.*"
                                          r"Did you mean 'train.toy.scale'"):
        load_config(None, ["train.toy.scal=2"])
    with pytest.raises(ConfigError, match="train.toy.scale must be > 0"):
        load_config(None, ["train.toy.scale=0"])
    with pytest.raises(ConfigError, match="train.toy.scale='x' must be a number"):
        load_config(None, ["train.toy.scale=x"])


def test_toy_method_trains_through_the_config_path(toy_method, tmp_path):
    """Step-1 loss of toy with scale 3 is 3x ACL's (same seed, same initial weights)."""
    from rcs.cli.common import check_names
    from rcs.train.trainer import Trainer

    first = {}
    for name, extra in (("acl", ["train.method=acl"]),
                        ("toy", ["train.method=toy", "train.toy.scale=3"])):
        cfg = load_config(None, TINY + extra + [f"out_dir={tmp_path / name}"])
        check_names(cfg)
        summary = Trainer(cfg, resume="none").fit()
        assert summary["method"] == name
        steps = [r for r in read_jsonl(tmp_path / name / "metrics.jsonl") if r["event"] == "step"]
        first[name] = steps[0]["loss"]
    assert first["toy"] == pytest.approx(3 * first["acl"], rel=1e-5)


def test_unknown_method_lists_the_registered_ones():
    from rcs.cli.common import check_names
    from rcs.methods import build_method

    cfg = load_config(None, ["train.method=acll"])
    with pytest.raises(ConfigError, match=r"unknown train.method 'acll'. Did you mean 'acl'\? "
                                          r"Available: .*advcl.*rocl"):
        check_names(cfg)
    with pytest.raises(ConfigError, match="Did you mean 'acl'"):
        build_method("acll", cfg)


@pytest.mark.parametrize("old, new", [
    ("advcl_pseudo_every", "advcl.pseudo_every"), ("tikhonov_lambda", "tikhonov.lam"),
    ("rocl_lambda", "rocl.lam"), ("key_momentum", "memory.key_momentum"),
    ("memory_size", "memory.size"), ("ainfonce_tau_plus", "ainfonce.tau_plus"),
    ("air_variant", "air.variant"), ("layerwise_stages", "layerwise.stages"),
    ("byorl_pred_hidden", "byorl.pred_hidden"), ("dynacl_period", "dynacl.period"),
])
def test_old_flat_keys_are_refused_with_the_new_name(old, new, tmp_path):
    with pytest.raises(ConfigError, match=rf"'train.{old}' was renamed: write 'train.{new}'"):
        load_config(None, [f"train.{old}=1"])
    path = tmp_path / "old.yaml"
    path.write_text(f"train: {{{old}: 1}}\n")
    with pytest.raises(ConfigError, match=rf"write 'train.{new}'"):
        load_config(path)


def test_every_builtin_method_key_is_listed_with_its_doc():
    rows = {k: (d, doc) for k, d, doc in describe_config()}
    expected = {"train.advcl.pseudo_every": "100", "train.advcl.clusters": "[2, 10, 50, 100, 500]",
                "train.air.variant": "'faithful'", "train.dynacl.period": "50",
                "train.tikhonov.lam": "0.0", "train.rocl.lam": "256.0",
                "train.byorl.tau": "0.996", "train.clae.alpha": "1.0",
                "train.ifm.epsilon": "0.1", "train.hcl.tau_plus": "0.1",
                "train.mochi.query_mix": "256", "train.ainfonce.variant": "'iphn'",
                "train.memory.key_momentum": "0.999", "train.layerwise.stages": "[]"}
    for key, default in expected.items():
        assert rows[key][0] == default, key
        assert rows[key][1], f"{key} has no doc"
    assert not any(k.startswith("train.sections") for k in rows)
    assert not any(k.startswith(("train.advcl_", "train.rocl_")) for k in rows)


def test_method_section_validation_and_attribute_errors():
    with pytest.raises(ConfigError, match="train.advcl.attack_mode='sometimes' is not one of"):
        load_config(None, ["train.advcl.attack_mode=sometimes"])
    cfg = load_config(None)
    with pytest.raises(AttributeError, match=r"it is now train.advcl.pseudo_every"):
        cfg.train.advcl_pseudo_every  # noqa: B018
    assert cfg.train.advcl.pseudo_every == 100


def test_sections_survive_copy_and_pickle():
    import copy
    import dataclasses
    import pickle

    cfg = load_config(None, ["train.advcl.pseudo_every=7"])
    for other in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg)),
                  dataclasses.replace(cfg)):
        assert other.train.advcl.pseudo_every == 7 and other == cfg


def test_checkpoint_configs_of_earlier_versions_are_upgraded():
    from rcs.config import from_dict
    from rcs.config.schema import RunConfig
    from rcs.config.sections import upgrade_saved_config

    saved = {"train": {"method": "advcl", "advcl_pseudo_every": 3, "tikhonov_lambda": 0.5,
                       "key_momentum": 0.9, "epochs": 7}}
    up = upgrade_saved_config(saved)
    assert up["train"] == {"method": "advcl", "epochs": 7, "advcl": {"pseudo_every": 3},
                           "tikhonov": {"lam": 0.5}, "memory": {"key_momentum": 0.9}}
    assert "advcl" not in saved["train"]  # the input is left as it was
    cfg = from_dict(RunConfig, up)
    assert (cfg.train.advcl.pseudo_every, cfg.train.tikhonov.lam) == (3, 0.5)
    assert cfg.train.memory.key_momentum == 0.9 and cfg.train.memory.size == 65536
