"""Clean accuracy and PGD accuracy of a classifier ([0, 1] NCHW input -> logits).

PGD-20 as in the ACL / RobustSSL evaluation (``PUBLISHED_METHODS.md`` A1.3, A3.3)::

    x_adv = PGD(CE(model(.), y)): delta_0 ~ U(-eps, eps), 20 steps of alpha = 2/255,
            projected onto ||delta||_inf <= 8/255 and [0, 1]; the model in eval mode
    robust accuracy = mean_b [argmax model(x_adv_b) == y_b]

Batch ``i`` draws its random start from a generator seeded by ``(seed, i)``, so the result does
not depend on what ran before. The model is put in eval mode; gradients flow to the input only.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from rcs.attacks import objectives, pgd
from rcs.config.schema import AttackConfig
from rcs.data import ImageDataset, to_float
from rcs.utils.progress import bar
from rcs.utils.seed import seed_int


def iter_batches(dataset: ImageDataset, batch_size: int, device: torch.device | str,
                 limit: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x float [0, 1], y)`` batches of the first ``limit`` (0 = all) images, in order."""
    n = len(dataset) if not limit else min(limit, len(dataset))
    for start in range(0, n, batch_size):
        x, y = dataset.get_batch(np.arange(start, min(start + batch_size, n)))
        if y is None:
            from rcs.errors import DataError

            raise DataError(f"dataset {dataset.name!r} has no labels; evaluate on a labelled "
                            "split (e.g. the test split)")
        yield to_float(x.to(device)), y.to(device)


def _n(dataset: ImageDataset, limit: int) -> int:
    return len(dataset) if not limit else min(limit, len(dataset))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``argmax model(x)`` in eval mode."""
    model.eval()
    return model(x).argmax(dim=1)


def clean_accuracy(model: nn.Module, dataset: ImageDataset, batch_size: int = 256,
                   device: torch.device | str = "cpu", limit: int = 0) -> dict[str, float]:
    """``{'accuracy', 'correct', 'n'}`` on clean images."""
    correct = n = 0
    pbar = bar(-(-_n(dataset, limit) // batch_size), desc="clean", unit="batch")
    for x, y in iter_batches(dataset, batch_size, device, limit):
        correct += int((predict(model, x) == y).sum())
        n += len(y)
        pbar.update(1)
    pbar.close()
    return {"accuracy": correct / max(n, 1), "correct": correct, "n": n}


def pgd_accuracy(model: nn.Module, dataset: ImageDataset, attack: AttackConfig,
                 batch_size: int = 256, device: torch.device | str = "cpu", limit: int = 0,
                 seed: int = 1) -> dict[str, float]:
    """``{'accuracy', 'correct', 'n', 'eps', 'alpha', 'steps'}`` under L-inf PGD with CE."""
    device = torch.device(device)
    correct = n = 0
    pbar = bar(-(-_n(dataset, limit) // batch_size), desc=f"pgd-{attack.steps}", unit="batch")
    for i, (x, y) in enumerate(iter_batches(dataset, batch_size, device, limit)):
        gen = torch.Generator(device=device).manual_seed(seed_int(seed, i))
        x_adv = pgd(objectives.cross_entropy(model, y), x, attack.eps, attack.alpha, attack.steps,
                    random_start=attack.random_start, generator=gen, model=model)
        correct += int((predict(model, x_adv) == y).sum())
        n += len(y)
        pbar.update(1)
        pbar.set_postfix(acc=f"{correct / n:.3f}")
    pbar.close()
    return {"accuracy": correct / max(n, 1), "correct": correct, "n": n, "eps": attack.eps,
            "alpha": attack.alpha, "steps": attack.steps}
