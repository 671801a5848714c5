"""Dataset readers, one module per on-disk format, behind a name -> reader registry.

Every reader takes a :class:`~rcs.config.schema.DataConfig` and a split and returns an
:class:`~rcs.data.dataset.ImageDataset`; missing or incomplete files raise
:class:`~rcs.errors.DataError` naming the expected layout.
"""

from __future__ import annotations

from collections.abc import Callable

from rcs.config.checks import check_name
from rcs.config.schema import DataConfig
from rcs.data.dataset import ImageDataset
from rcs.data.readers.cifar import read_cifar
from rcs.data.readers.folder import read_folder
from rcs.data.readers.imagenet32 import read_imagenet32
from rcs.data.readers.npz import read_npz
from rcs.data.readers.stl10 import read_stl10
from rcs.data.readers.synthetic import make_synthetic, read_synthetic

Reader = Callable[[DataConfig, str], ImageDataset]

READERS: dict[str, Reader] = {
    "cifar10": lambda c, s: read_cifar(c.root, s, "cifar10", c.download),
    "cifar100": lambda c, s: read_cifar(c.root, s, "cifar100", c.download),
    "stl10": lambda c, s: read_stl10(c.root, s, c.download, c.cache_dir),
    "imagenet32": lambda c, s: read_imagenet32(c.root, s, c.cache_dir),
    "npz": lambda c, s: read_npz(c.root, s, c.cache_dir),
    "folder": lambda c, s: read_folder(c.root, s, c.image_size, c.cache_dir),
    "synthetic": lambda c, s: read_synthetic(c.synthetic_size, c.image_size, c.num_classes, s),
}
"""``data.name`` -> reader(cfg, split). Add one with :func:`register_reader`."""


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator adding a dataset reader ``reader(cfg, split) -> ImageDataset`` to
    :data:`READERS` under ``name`` (then ``data.name: <name>`` reads with it)."""

    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return deco


def check_reader(name: str) -> None:
    """ConfigError unless ``name`` is a registered reader (the closest one named)."""
    check_name("data.name", name, list(READERS))

__all__ = ["READERS", "Reader", "check_reader", "make_synthetic", "read_cifar", "read_folder",
           "read_imagenet32", "read_npz", "read_stl10", "read_synthetic", "register_reader"]
