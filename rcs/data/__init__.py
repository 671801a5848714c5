"""Data layer: datasets and readers, index batches, on-device augmentation.

Public API (see docs/CONTRACTS.md):

* :class:`ImageDataset` - uint8 NHWC images (in RAM or memory-mapped) + int64 labels;
* :func:`build_dataset` / :func:`train_val_split` - a dataset from a ``DataConfig``;
* :func:`index_batches` - deterministic, rank-sharded index batches for an epoch;
* :class:`Augment` / :func:`to_float` - batched SimCLR/ACL augmentation on the device;
* :func:`high_pass` - FFT high-pass filter (AdvCL's high-frequency view).

Datasets (``data.name``; the layout expected under ``data.root``):

* ``cifar10`` / ``cifar100``: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` /
  ``cifar-100-python/{train,test,meta}`` (official python version; ``data.download`` fetches it);
* ``stl10``: ``stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin`` (memory-mapped);
* ``imagenet32``: ``Imagenet32_train_npz/train_data_batch_{1..10}.npz``,
  ``Imagenet32_val_npz/val_data.npz`` (or flat), decoded once into a memory-mapped cache;
* ``npz``: a file with ``x_train/y_train/x_test/y_test`` or ``images/labels`` (uint8 NHWC);
* ``folder``: ``<class_name>/*.png|jpg|jpeg`` (optionally under ``<split>/``), resized;
* ``synthetic``: procedural images with learnable classes (``rcs demo``, tests).

Decoded caches live in ``data.cache_dir`` (default ``<root>/.rcs_cache``).
"""

from __future__ import annotations

from rcs.data.augment import Augment, to_float
from rcs.data.batches import index_batches
from rcs.data.build import build_dataset, train_val_split
from rcs.data.dataset import ImageDataset
from rcs.data.frequency import high_pass

__all__ = ["Augment", "ImageDataset", "build_dataset", "high_pass", "index_batches", "to_float",
           "train_val_split"]
