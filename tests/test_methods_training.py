"""AdvCL / RoCL / BYORL / Tikhonov inside the Trainer: exact mid-epoch resume of the method
state (extra modules, pseudo-labels), and every method with the simple selectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcs.utils.checkpoint_io import load_checkpoint
from tests.conftest import METHOD_SETS, StopAfter
from tests.conftest import method_cfg as cfg_for

pytestmark = pytest.mark.filterwarnings("ignore:AdvCL pseudo-labels:UserWarning")


@pytest.mark.parametrize("method", ["byorl", "advcl"])
def test_mid_epoch_resume_is_exact_with_method_state(tmp_path, method):
    from rcs.train.trainer import Trainer
    from rcs.utils.signals import TrainingInterrupted

    extra = ["train.epochs=3", "train.advcl.pseudo_every=2"] if method == "advcl" else \
        ["train.epochs=3"]
    ref = Trainer(cfg_for(method, *extra, out=tmp_path / "ref"), resume="none")
    ref.fit()
    run = tmp_path / "run"
    t = Trainer(cfg_for(method, *extra, out=run), resume="none", stop=StopAfter(5))
    with pytest.raises(TrainingInterrupted):
        t.fit()
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["progress"]["epoch"] == 2 and state["progress"]["batch"] > 0  # mid-epoch
    assert "extras" in state
    if method == "byorl":
        assert any(k.startswith("target.") for k in state["extras"])
    else:
        assert state["method"]["pseudo_labels"].shape[0] == 3
    Trainer(cfg_for(method, *extra, out=run), resume="auto").fit()
    a, b = load_checkpoint(tmp_path / "ref" / "checkpoint.pt"), load_checkpoint(
        run / "checkpoint.pt")
    for key in ("model", "extras"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    if method == "advcl":
        assert torch.equal(a["method"]["pseudo_labels"], b["method"]["pseudo_labels"])
        assert a["method"]["pseudo_labels_epoch"] == 3


@pytest.mark.parametrize("selector", ["random", "full"])
def test_every_method_runs_with_the_simple_selectors(tmp_path, selector):
    from rcs.train.trainer import Trainer

    for method in METHOD_SETS:
        out = tmp_path / f"{method}-{selector}"
        summary = Trainer(cfg_for(method, f"selection.method={selector}", out=out),
                          resume="none").fit()
        assert summary["selections"] == (0 if selector == "full" else 1)
        assert np.isfinite(summary["final_loss"]), method
