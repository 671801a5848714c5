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


class PublishedStyleModel(nn.Module):
    """The published ACL family's names: ``get_feature(x, bn_name)`` and the head at ``.fc``."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), DualBN(8)
        self.fc = ProjHead(8)

    def get_feature(self, x, bn_name):
        return torch.relu(self.bn(self.conv(x), bn_name)).mean((2, 3))

    def forward(self, x, bn_name="normal"):
        return self.fc(self.get_feature(x, bn_name), bn_name)


class StackedViewPairs(Dataset):
    """The published datasets: ``(torch.stack([view1, view2]), label)`` per item, uint8 views
    here (any dtype the views come in)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 2, 3, 16, 16), generator=g, dtype=torch.uint8)
        self.y = torch.arange(n) % 4

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_published_style_model_and_view_pair_dataset():
    import numpy as np

    import rcs

    model = PublishedStyleModel().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = StackedViewPairs(50, 0)
    sel = rcs.RCSSelector(encoder=model.get_feature, head=model.fc,
                          bn={"clean": "normal", "adv": "pgd"}, fraction=0.2, seed=5,
                          candidate_batch=10, rounds=3)
    cs = sel.select(train, [0, 1, 2, 3, 4])
    assert len(cs) == round(0.2 * 45) and not set(cs.indices.tolist()) & {0, 1, 2, 3, 4}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
    assert cs.meta["settings"]["method"] == "rcs" and cs.meta["settings"]["seed"] == 5
    # the dataset's own views are used (no augmentation): the same coreset whatever augment
    sel2 = rcs.RCSSelector(encoder=model.get_feature, head=model.fc,
                           bn={"clean": "normal", "adv": "pgd"}, fraction=0.2, seed=5,
                           candidate_batch=10, rounds=3,
                           augment=lambda x, g: (_ for _ in ()).throw(AssertionError("aug")))
    np.testing.assert_array_equal(sel2.select(train, [0, 1, 2, 3, 4]).indices, cs.indices)
    # items that are not images get an error naming the accepted formats
    bad = [(torch.zeros(7), 0)] * 20
    with __import__("pytest").raises(Exception, match="stack of augmented views"):
        sel.select(bad, [0, 1])


def test_coreset_sampler_reshuffles_each_epoch_without_set_epoch():
    import numpy as np

    import rcs

    sampler = rcs.CoresetSampler(np.arange(0, 200, 2), shuffle=True, seed=1)
    orders = [list(sampler) for _ in range(3)]
    assert all(sorted(o) == list(range(0, 200, 2)) for o in orders)
    assert orders[0] != orders[1] != orders[2]
    # an explicit set_epoch pins the order (DistributedSampler semantics)
    pinned = rcs.CoresetSampler(np.arange(0, 200, 2), shuffle=True, seed=1)
    pinned.set_epoch(0)
    assert list(pinned) == list(pinned) == orders[0]
