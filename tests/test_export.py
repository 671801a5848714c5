"""`rcs export`: plain state dict + safetensors + sidecar, round trip bit for bit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from rcs.cli.main import main
from rcs.config import to_dict
from rcs.errors import CheckpointError, ConfigError
from rcs.finetune.export import export_checkpoint
from rcs.models import (
    build_exported,
    export_classifier,
    load_exported,
    single_bn_state_dict,
)
from rcs.models.pretrained import load_classifier, save_classifier
from tests.conftest import pretraining_checkpoint as _checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"


def pretraining_checkpoint(tmp_path: Path, extra: list[str] | None = None):
    """conftest's tiny pretraining checkpoint, its model in eval mode."""
    path, cfg, model = _checkpoint(tmp_path, extra)
    return path, cfg, model.eval()


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("branch", ["pgd", "normal"])
def test_encoder_export_round_trips_bit_for_bit(tmp_path, branch):
    path, cfg, model = pretraining_checkpoint(tmp_path)
    assert main(["export", "--checkpoint", str(path), "--branch", branch,
                 "--out", str(tmp_path / "exp")]) == 0
    expected = single_bn_state_dict(model.encoder.state_dict(), branch)
    pt = torch.load(tmp_path / "exp" / "encoder.pt", weights_only=True)
    from safetensors.torch import load_file

    st = load_file(str(tmp_path / "exp" / "encoder.safetensors"))
    assert_same_tensors(pt, expected)
    assert_same_tensors(st, expected)
    meta = json.loads((tmp_path / "exp" / "encoder.json").read_text())
    assert meta["kind"] == "encoder" and meta["branch"] == branch and meta["arch"] == "resnet18"
    assert meta["input"]["range"] == [0.0, 1.0] and meta["input"]["image_size"] == 32
    assert meta["normalization"]["name"] == "imagenet"
    assert meta["normalization"]["mean"] == [0.485, 0.456, 0.406]
    assert meta["feature_dim"] == model.feature_dim
    # rebuilt from the sidecar with plain BN: same output as the multi-BN model on the branch
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for file in ("encoder.pt", "encoder.safetensors", "encoder.json"):
        net, _ = load_exported(tmp_path / "exp" / file)
        assert not any("bns" in k for k in net.state_dict())
        with torch.no_grad():
            assert torch.equal(net(x), model.features(x, bn=branch))
    other = "normal" if branch == "pgd" else "pgd"
    with torch.no_grad():  # the branches differ, so the check above can fail
        assert not torch.allclose(net(x), model.features(x, bn=other))


def test_readme_loader_snippet_runs_as_written(tmp_path, monkeypatch):
    """The README's few lines rebuild the exported encoder with plain torch + rcs."""
    path, _, model = pretraining_checkpoint(tmp_path)
    main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "export")])
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- export-example: start -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its export-example block"
    monkeypatch.chdir(tmp_path)
    images = torch.rand(4, 3, 32, 32)
    scope = {"images": images}
    exec(compile(m.group(1), "README.md", "exec"), scope)
    with torch.no_grad():
        assert torch.equal(scope["features"], model.features(images, bn="pgd"))


def test_fine_tuned_classifier_export_round_trips(tmp_path):
    _, cfg, model = pretraining_checkpoint(tmp_path)
    clf = export_classifier(model, "pgd", num_classes=10)
    with torch.no_grad():
        clf.fc.weight.normal_(generator=torch.Generator().manual_seed(5))
        clf.fc.bias.uniform_(-1, 1)
    save_classifier(tmp_path / "classifier.pt", clf, cfg.model, 10,
                    {"mode": "slf", "branch": "pgd", "config": to_dict(cfg)})
    main(["export", "--checkpoint", str(tmp_path / "classifier.pt"), "--out",
          str(tmp_path / "e")])
    meta = json.loads((tmp_path / "e" / "classifier.json").read_text())
    assert meta["kind"] == "classifier" and meta["num_classes"] == 10
    assert meta["branch"] == "pgd" and meta["source"]["mode"] == "slf"
    assert_same_tensors(torch.load(tmp_path / "e" / "classifier.pt", weights_only=True),
                        {k: v.cpu() for k, v in clf.state_dict().items()})
    net, _ = load_exported(tmp_path / "e" / "classifier.safetensors")
    x = torch.rand(5, 3, 32, 32)
    ref, _ = load_classifier(tmp_path / "classifier.pt")
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
        assert torch.equal(net(x), clf(x))
    with pytest.raises(ConfigError, match="branch 'pgd'"):
        export_checkpoint(tmp_path / "classifier.pt", tmp_path / "e2", branch="normal")


def test_export_errors_name_the_problem(tmp_path, capsys):
    path, _, _ = pretraining_checkpoint(tmp_path)
    assert main(["export", "--checkpoint", str(path), "--branch", "pgd_ce"]) == 2
    assert "not a BN branch" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(path), "--what", "classifier"]) == 2
    assert "without a classifier" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(path), "--format", "onnx"]) == 2
    assert "not one of pt, safetensors" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not an rcs export"):
        build_exported({"format": "other", "kind": "encoder"})


def test_only_the_pt_format_when_asked(tmp_path):
    path, _, _ = pretraining_checkpoint(tmp_path)
    main(["export", "--checkpoint", str(path), "--format", "pt", "--out", str(tmp_path / "o")])
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["encoder.json", "encoder.pt"]
