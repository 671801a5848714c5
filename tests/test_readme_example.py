"""The README's library example runs as written on a foreign dual-BN ACL model."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

README = Path(__file__).resolve().parents[1] / "README.md"


class DualBN(nn.Module):
    """The published ACL style: one BN per branch name, chosen by an argument."""

    def __init__(self, c: int, dim: int = 2):
        super().__init__()
        bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        self.bn_list = nn.ModuleList([bn(c), bn(c)])

    def forward(self, x, bn_name):
        return self.bn_list[["normal", "pgd"].index(bn_name)](x)


class ProjHead(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1, self.bn1, self.fc2 = nn.Linear(d, d), DualBN(d, 1), nn.Linear(d, d, bias=False)

    def forward(self, f, bn_name):
        return self.fc2(torch.relu(self.bn1(self.fc1(f), bn_name)))


class ForeignACLModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), DualBN(8)
        self.proj_head = ProjHead(8)

    def features(self, x, bn_name):
        return torch.relu(self.bn(self.conv(x), bn_name)).mean((2, 3))

    def forward(self, x, bn_name="normal"):
        return self.proj_head(self.features(x, bn_name), bn_name)


class ImagesWithLabels(Dataset):
    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.rand(n, 3, 16, 16, generator=g), torch.arange(n) % 4

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_readme_library_example_runs():
    text = README.read_text()
    code = re.search(r"<!-- readme-example: start -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 10
    code = code.replace("warmup_epochs=100, every=20", "warmup_epochs=1, every=2")
    code = code.replace("batch_size=512", "batch_size=16")
    model = ForeignACLModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[list[int]] = []

    def train_one_epoch(model, loader):  # records which images each epoch trained on
        seen.append(sorted(int(i) for x, y in loader for i in (x[:, 0, 0, 0] * 0 + y)))

    ns = {"model": model, "epochs": 4, "train_set": ImagesWithLabels(60, 0),
          "val_set": ImagesWithLabels(6, 1), "train_one_epoch": train_one_epoch}
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own README
    assert [len(s) for s in seen] == [60, 12, 12, 12]  # full warm-up, then 20% coresets
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # selection left it untouched
    assert isinstance(ns["sampler"], __import__("rcs").CoresetSampler)
