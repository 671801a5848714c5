"""Label-fraction fine-tuning subsets: exact size, class balance, seeding, nesting."""

from __future__ import annotations

import numpy as np
import pytest

from rcs.errors import ConfigError, DataError
from rcs.finetune.labels import class_quotas, label_fraction_subset


@pytest.mark.parametrize("fraction, per_class", [(0.01, 50), (0.1, 500), (1.0, 5000)])
def test_cifar_sized_subsets_exact_and_balanced(fraction, per_class):
    labels = np.tile(np.arange(10), 5000)  # 50,000 images, 10 balanced classes
    idx = label_fraction_subset(labels, fraction, seed=0)
    assert len(idx) == round(fraction * 50_000) and len(np.unique(idx)) == len(idx)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert np.array_equal(np.bincount(labels[idx], minlength=10), np.full(10, per_class))


def test_seeded_deterministic_and_nested():
    labels = np.random.default_rng(0).integers(0, 7, 3000)
    a = label_fraction_subset(labels, 0.01, seed=5)
    assert np.array_equal(a, label_fraction_subset(labels.copy(), 0.01, seed=5))
    assert not np.array_equal(a, label_fraction_subset(labels, 0.01, seed=6))
    b = label_fraction_subset(labels, 0.1, seed=5)
    assert np.isin(a, b).all()  # 1 % inside 10 % for the same seed


@pytest.mark.parametrize("n_images, fraction", [(103, 0.1), (1000, 0.013), (57, 0.5)])
def test_counts_differ_by_at_most_one(n_images, fraction):
    labels = np.arange(n_images) % 10
    idx = label_fraction_subset(labels, fraction, seed=1)
    n = round(fraction * n_images)
    counts = np.bincount(labels[idx], minlength=10)
    assert len(idx) == n and counts.sum() == n
    assert counts.max() - counts.min() <= 1 and counts.min() == n // 10


def test_small_classes_are_exhausted_and_the_rest_rebalanced():
    labels = np.array([0] * 3 + [1] * 50 + [2] * 50)
    idx = label_fraction_subset(labels, 0.3, seed=0)
    assert len(idx) == 31
    assert np.array_equal(np.bincount(labels[idx]), [3, 14, 14])
    assert class_quotas(np.array([3, 50, 50]), 31).tolist() == [3, 14, 14]
    assert class_quotas(np.array([5, 5]), 10).tolist() == [5, 5]
    with pytest.raises(ValueError):
        class_quotas(np.array([5, 5]), 11)


def test_errors_and_config():
    from rcs.config import load_config

    with pytest.raises(DataError):
        label_fraction_subset(np.array([0, 1, -1]), 0.5)
    with pytest.raises(ValueError):
        label_fraction_subset(np.array([0, 1]), 0.0)
    with pytest.raises(ConfigError, match="label_fraction"):
        load_config(None, ["finetune.label_fraction=1.5"])
    assert load_config(None, ["finetune.label_fraction=0.01"]).finetune.label_fraction == 0.01
