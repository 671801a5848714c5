"""What the trainer methods require and offer: the method registry, CLI help and README
agree, single-BN methods refuse dual-BN models, AdvCL needs three BN branches and Tikhonov
its lambda, and MultiForward's extra modules."""

from __future__ import annotations

import pytest
import torch

from rcs.config import load_config
from rcs.errors import ConfigError
from tests.conftest import METHOD_SETS, SINGLE_BN
from tests.conftest import METHOD_TINY as TINY
from tests.conftest import method_cfg as cfg_for

pytestmark = pytest.mark.filterwarnings("ignore:AdvCL pseudo-labels:UserWarning")



def test_catalog_registry_cli_and_readme_agree():
    from pathlib import Path

    from rcs.cli.parser import build_parser
    from rcs.methods import method_names
    from rcs.methods.catalog import CATALOG

    assert sorted(CATALOG) == method_names()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    helptext = sub.format_help()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in CATALOG:
        assert name in helptext and f"| `{name}` |" in readme, name
    assert "Fan et al." in helptext and "Gowal et al." in helptext


@pytest.mark.parametrize("method", ["rocl", "byorl", "tikhonov"])
def test_single_bn_methods_refuse_dual_bn_models(method):
    from rcs.methods import build_method

    sets = [s for s in TINY] + [s for s in METHOD_SETS[method] if not s.startswith("model.bn")]
    with pytest.raises(ConfigError, match="single-BN"):
        build_method(method, load_config(None, sets))


def test_advcl_needs_three_branches_and_tikhonov_needs_lambda():
    from rcs.methods import build_method

    with pytest.raises(ConfigError, match="pgd_ce"):
        build_method("advcl", load_config(None, TINY + ["train.method=advcl"]))
    with pytest.raises(ConfigError, match="tikhonov.lam"):
        build_method("tikhonov", load_config(None, TINY + SINGLE_BN))
    with pytest.raises(ConfigError, match="advcl.attack_mode"):
        load_config(None, TINY + ["train.advcl.attack_mode=sometimes"])


def test_multiforward_extras():
    from torch import nn

    from rcs.methods.base import MultiForward
    from rcs.models import build_model

    model = build_model(cfg_for("rocl").model)
    extra = nn.Linear(16, 3)
    fw = MultiForward(model, nn.ModuleDict({"lin": extra}))
    x = torch.rand(4, 3, 32, 32)
    z, y = fw([(x, "normal", "proj"), (x, "normal", "proj:lin")])
    assert torch.allclose(y, extra(z))
    with pytest.raises(ValueError, match="no extra module"):
        fw([(x, "normal", "proj:nope")])
