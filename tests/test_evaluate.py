"""rcs.evaluate: clean / PGD-20 accuracy, third-party attack interop, AutoAttack bridge,
CIFAR-10-C style corruption files."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rcs.config.schema import AttackConfig, EvalConfig
from rcs.data import ImageDataset
from rcs.errors import DataError
from rcs.evaluate import (
    autoattack_available,
    clean_accuracy,
    corruption_accuracy,
    evaluate,
    load_corruption,
    pgd_accuracy,
)

EPS, ALPHA = 8 / 255, 2 / 255


class TinyCNN(nn.Module):
    """A plain (non-robust) CNN: [0, 1] NCHW -> logits."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, stride=2),
            nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def faint_patterns(n: int, seed: int, amplitude: float = 0.04) -> ImageDataset:
    """Uniform noise in [0.25, 0.75] plus a faint per-class +-amplitude pixel pattern: easy to
    learn from all pixels together, and an 8/255 perturbation per pixel can erase it."""
    patterns = np.random.default_rng(123).choice([-1.0, 1.0], size=(10, 32, 32, 3))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.uniform(0.25, 0.75, (n, 32, 32, 3)) + amplitude * patterns[y]
    return ImageDataset(np.clip(np.round(255 * x), 0, 255).astype(np.uint8), y.astype(np.int64),
                        name=f"faint-{seed}")


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN trained with clean CE until it is accurate: a deliberately non-robust model."""
    torch.manual_seed(0)
    train, test = faint_patterns(1024, seed=0), faint_patterns(200, seed=1)
    x = torch.from_numpy(train.images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(train.labels)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, test


class TorchattacksStylePGD:
    """Minimal torchattacks-style attack (``atk(images, labels)``): it only calls ``model(x)``."""

    def __init__(self, model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True):
        self.model, self.eps, self.alpha, self.steps = model, eps, alpha, steps
        self.random_start = random_start

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        images = images.clone().detach()
        adv = images.clone().detach()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad = True
            cost = nn.CrossEntropyLoss()(self.model(adv), labels)
            grad = torch.autograd.grad(cost, adv)[0]
            adv = adv.detach() + self.alpha * grad.sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1).detach()
        self.model.train(was_training)
        return adv


def test_pgd20_collapses_a_non_robust_model_and_never_beats_clean(trained):
    model, test = trained
    clean = clean_accuracy(model, test, batch_size=64)
    assert clean["n"] == len(test) == 200
    assert clean["accuracy"] > 0.9, "the tiny CNN should learn the classes"
    rob = pgd_accuracy(model, test, AttackConfig(eps=EPS, alpha=ALPHA, steps=20), batch_size=64)
    assert rob["accuracy"] <= clean["accuracy"]
    assert rob["accuracy"] < 0.25 * clean["accuracy"], (clean, rob)
    # eps = 0 (and no steps) change nothing: accuracy equals the clean accuracy exactly
    zero = pgd_accuracy(model, test, AttackConfig(eps=0.0, alpha=ALPHA, steps=20), batch_size=64)
    assert zero["accuracy"] == clean["accuracy"]
    none = pgd_accuracy(model, test, AttackConfig(eps=EPS, alpha=ALPHA, steps=0), batch_size=64)
    assert none["accuracy"] == clean["accuracy"]


def test_clean_accuracy_matches_a_direct_computation(trained):
    model, test = trained
    x = torch.from_numpy(test.images).permute(0, 3, 1, 2).double() / 255
    with torch.no_grad():
        direct = (model.double()(x).argmax(1).numpy() == test.labels).mean()
    model.float()
    assert clean_accuracy(model, test, batch_size=37)["accuracy"] == pytest.approx(direct)


def linear_problem(n: int = 400, seed: int = 0) -> tuple[nn.Module, ImageDataset]:
    """A binary linear classifier on flattened [0, 1] 8x8 images and images in [0.25, 0.75]
    (8/255 never reaches the box), labels its own predictions on half of them and the other
    class on a tenth."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, 3 * 8 * 8, generator=g, dtype=torch.float64) * 0.05)
        model[1].bias.copy_(-0.5 * model[1].weight.sum(1))  # centred on the mean image
    rng = np.random.default_rng(seed)
    images = rng.integers(64, 192, (n, 8, 8, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    wrong = rng.random(n) < 0.1
    return model, ImageDataset(images, np.where(wrong, 1 - pred, pred).astype(np.int64))


def linear_robust_accuracy(model: nn.Module, dataset: ImageDataset, eps: float) -> float:
    """Exact L-inf robust accuracy of a binary linear classifier on [0, 1] inputs (no box
    constraint binds): the worst perturbation is eps * sign(w_other - w_y), so a correct sample
    survives iff its margin (w_y - w_o) x + b_y - b_o exceeds eps * ||w_y - w_o||_1."""
    w, b = model[1].weight.detach(), model[1].bias.detach()
    x = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).double().flatten(1) / 255
    y = torch.from_numpy(dataset.labels)
    dw = w[y] - w[1 - y]
    margin = (dw * x).sum(1) + b[y] - b[1 - y]
    return float((margin > eps * dw.abs().sum(1)).double().mean())


@pytest.mark.parametrize("eps", [1 / 255, 2 / 255, 4 / 255])
def test_pgd_accuracy_equals_the_closed_form_linear_robust_accuracy(eps):
    """PGD with alpha = eps finds the optimal L-inf attack of a linear binary model in one step;
    its accuracy is the closed form. A classifier fed [0, 255] or normalised inputs, logits
    replaced by something else, or eps on another scale would not match."""
    model, ds = linear_problem()
    exact = linear_robust_accuracy(model, ds, eps)
    clean = linear_robust_accuracy(model, ds, 0.0)
    assert 0.05 < exact < clean - 0.05  # the attack flips some, but not all, samples
    assert clean_accuracy(model.float(), ds, batch_size=64)["accuracy"] == pytest.approx(clean)
    rob = pgd_accuracy(model.float(), ds, AttackConfig(eps=eps, alpha=eps, steps=3), batch_size=64)
    assert rob["accuracy"] == pytest.approx(exact, abs=1 / len(ds))


def test_the_closed_form_check_fails_on_a_wrong_input_contract():
    """The closed-form check can fail: the same image classifier written for [0, 255] inputs
    (weights / 255) and handed [0, 1] images, as an evaluation with the wrong input contract
    would, gives clean and PGD accuracies unequal to the closed form of the image classifier."""
    model, ds = linear_problem()
    eps = 2 / 255
    wrong = copy.deepcopy(model).float()
    with torch.no_grad():
        wrong[1].weight.div_(255)
    clean = clean_accuracy(wrong, ds, batch_size=64)["accuracy"]
    assert clean != pytest.approx(linear_robust_accuracy(model, ds, 0.0), abs=1 / len(ds))
    rob = pgd_accuracy(wrong, ds, AttackConfig(eps=eps, alpha=eps, steps=3), batch_size=64)
    assert rob["accuracy"] != pytest.approx(linear_robust_accuracy(model, ds, eps),
                                            abs=1 / len(ds))


def test_third_party_attack_runs_on_the_exported_classifier():
    """The exported single-BN classifier needs nothing but ``model(x)`` with x in [0, 1]."""
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model, export_classifier

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, blocks=[1], head_dim=8, num_classes=10),
                        classifier=True)
    clf = export_classifier(model, "pgd")
    x = torch.rand(6, 3, 32, 32)
    y = torch.randint(0, 10, (6,))
    clf.train()  # the attack must cope with (and restore) the mode itself
    adv = TorchattacksStylePGD(clf, steps=3)(x, y)
    assert clf.training
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= EPS + 1e-6
    clf.eval()
    with torch.no_grad():
        assert torch.allclose(clf(x), model.eval().logits(x, "pgd"), atol=1e-5)


@pytest.mark.skipif(not autoattack_available() and not os.environ.get("CI"),
                    reason="AutoAttack package not installed (pip install "
                    "'rcs-toolkit[autoattack]'; CI installs it with the dev extra and runs this)")
def test_autoattack_bridge_on_a_non_robust_model(trained):
    model, test = trained
    cfg = EvalConfig(autoattack_n_ex=24, batch_size=64)
    res = evaluate(model, test, cfg, ["clean", "autoattack"], log=lambda s: None)
    aa = res["autoattack"]
    assert aa["n"] == 24 and aa["version"] == "standard" and aa["eps"] == pytest.approx(EPS)
    assert aa["max_perturbation"] <= EPS + 1e-5
    assert aa["accuracy"] <= aa["clean_accuracy"]
    assert aa["accuracy"] < 0.25 * aa["clean_accuracy"]
    # in chunks, with a progress line and a time estimate after each: the same measurement
    from rcs.data.augment import to_float
    from rcs.evaluate.autoattack import autoattack_accuracy

    x, y = test.get_batch(np.arange(24))
    x = to_float(x)
    lines: list[str] = []
    again = autoattack_accuracy(model, x, y, eps=EPS, batch_size=8, chunk=8, seed=cfg.seed,
                                log=lines.append)
    assert [ln.split(" images")[0] for ln in lines] == [
        "[eval] autoattack 8/24", "[eval] autoattack 16/24", "[eval] autoattack 24/24"]
    assert all("s left" in ln and "robust" in ln for ln in lines)
    assert again["n"] == 24 and again["clean_accuracy"] == aa["clean_accuracy"]
    assert again["max_perturbation"] <= EPS + 1e-5
    assert again["accuracy"] < 0.25 * again["clean_accuracy"]


def test_missing_autoattack_is_a_message_not_a_crash(trained, monkeypatch):
    import rcs.evaluate.autoattack as bridge

    monkeypatch.setattr(bridge, "PACKAGES", ("rcs_no_such_autoattack_package",))
    model, test = trained
    msgs = []
    res = evaluate(model, test, EvalConfig(autoattack_n_ex=8), ["clean", "autoattack"],
                   log=msgs.append)
    assert res["autoattack"]["available"] is False
    assert "pip install" in res["autoattack"]["message"]
    assert any("autoattack skipped" in m for m in msgs)
    assert res["clean"]["accuracy"] > 0.9


def test_sanity_check_flags_probabilities_and_0031(trained):
    from rcs.evaluate import sanity_check

    model, test = trained
    x = torch.rand(4, 3, 32, 32)
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    with pytest.warns(UserWarning):
        msgs = sanity_check(probs, x, 0.031)
    assert any("probabilities" in m for m in msgs) and any("8/255" in m for m in msgs)


# ------------------------------------------------------------------ common corruptions
class MeanIntensityModel(nn.Module):
    """Predicts the class whose centre (c + 0.5) / C is closest to the image's mean pixel."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.register_buffer("centres", (torch.arange(classes) + 0.5) / classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))[:, None]
        return -(m - self.centres) ** 2


N_PER_SEV, CLASSES = 20, 4
# correct images per (corruption, severity): accuracy = k / 20
KNOWN = {"fog": [20, 15, 10, 5, 0], "snow": [18, 12, 9, 3, 1]}


def _value(cls: int) -> int:
    return int(round(255 * (cls + 0.5) / CLASSES))


@pytest.fixture()
def cifar_c(tmp_path):
    """A hand-made CIFAR-10-C style folder: <corruption>.npy uint8 [5*20, 32, 32, 3] + labels."""
    labels = np.tile(np.arange(N_PER_SEV) % CLASSES, 5).astype(np.int64)  # real layout: 5*N
    np.save(tmp_path / "labels.npy", labels)
    for name, ks in KNOWN.items():
        arr = np.zeros((5 * N_PER_SEV, 32, 32, 3), np.uint8)
        for s, k in enumerate(ks):
            for i in range(N_PER_SEV):
                y = labels[s * N_PER_SEV + i]
                cls = y if i < k else (y + 1) % CLASSES
                arr[s * N_PER_SEV + i] = _value(cls)
        np.save(tmp_path / f"{name}.npy", arr)
    return tmp_path


def test_corruption_accuracy_per_severity_and_mean(cifar_c):
    res = corruption_accuracy(MeanIntensityModel(CLASSES), cifar_c, list(KNOWN), batch_size=7)
    for name, ks in KNOWN.items():
        for s, k in enumerate(ks, start=1):
            assert res["per_corruption"][name][str(s)] == pytest.approx(k / N_PER_SEV)
    for s in range(1, 6):
        want = np.mean([KNOWN[c][s - 1] / N_PER_SEV for c in KNOWN])
        assert res["per_severity"][str(s)] == pytest.approx(want)
    total = np.mean([k / N_PER_SEV for ks in KNOWN.values() for k in ks])
    assert res["accuracy"] == pytest.approx(total)
    assert res["n_per_severity"] == N_PER_SEV


def test_corruption_subset_n_ex_and_severities(cifar_c):
    res = corruption_accuracy(MeanIntensityModel(CLASSES), cifar_c, ["fog"], severities=[2, 4],
                              n_ex=10)
    # fog severity 2: the first 15 of 20 are correct -> the first 10 all are; severity 4: 5/10
    assert res["per_corruption"]["fog"] == {"2": 1.0, "4": 0.5}
    assert res["accuracy"] == pytest.approx(0.75)
    x, y = load_corruption(cifar_c, "snow", 5, n_ex=3)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and list(y) == [0, 1, 2]


def test_corruption_labels_of_length_n_are_accepted(cifar_c):
    np.save(cifar_c / "labels.npy", np.arange(N_PER_SEV) % CLASSES)
    res = corruption_accuracy(MeanIntensityModel(CLASSES), cifar_c, ["snow"])
    assert res["per_corruption"]["snow"]["2"] == pytest.approx(12 / 20)


def test_corruption_files_missing_or_malformed_are_clear(cifar_c):
    with pytest.raises(DataError, match="gaussian_noise.npy"):
        corruption_accuracy(MeanIntensityModel(CLASSES), cifar_c)  # the 15 standard ones
    np.save(cifar_c / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="severities 1-5 stacked"):
        corruption_accuracy(MeanIntensityModel(CLASSES), cifar_c, ["fog"])
    with pytest.raises(DataError, match="does not exist"):
        corruption_accuracy(MeanIntensityModel(CLASSES), cifar_c / "nope", ["fog"])
