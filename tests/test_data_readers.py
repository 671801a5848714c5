"""Dataset readers on hand-made fixtures in the real on-disk layouts, plus datasets and batches."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import multiprocessing
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rcs.config.schema import DataConfig
from rcs.data import ImageDataset, build_dataset, index_batches, train_val_split
from rcs.data.cache import CacheWriter, cached_arrays
from rcs.data.readers import cifar, npz, stl10
from rcs.data.readers.download import download_url, extract_archive, md5_file
from rcs.errors import DataError

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- fixture writers
def _cifar_rows(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _py2_str(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING: a python-2 str


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way python 2 + numpy 1.x wrote the official files (hand-assembled)."""
    rows, cols = data.shape
    raw = data.tobytes()
    out = b"\x80\x02}(" + _py2_str(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
    out += _py2_str(b"b") + b"\x87R(K\x01M" + struct.pack("<H", rows) + b"M"
    out += struct.pack("<H", cols) + b"\x86cnumpy\ndtype\n" + _py2_str(b"u1") + b"\x89\x88\x87R"
    out += b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb" + _py2_str(b"labels")
    return out + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu."


def write_cifar10(root: Path, n: int = 4, protocol: int | str = 2) -> dict[str, tuple]:
    """The python-version layout with ``n`` rows per file; returns {file: (data, labels)}.

    ``protocol="py2"`` writes the batches as python 2 did (py2 str keys, numpy.core globals).
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = _cifar_rows(n), [int(v) for v in RNG.integers(0, 10, n)]
        out[name] = (data, labels)
        if protocol == "py2":
            (folder / name).write_bytes(py2_pickle(data, labels))
            continue
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)],
                     b"num_cases_per_batch": n, b"num_vis": 3072}, f, protocol=2)
    return out


@pytest.fixture
def small_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar, "ROWS_PER_FILE", {**{f"data_batch_{i}": 4 for i in range(1, 6)},
                                                 "test_batch": 4, "train": 6, "test": 3})


# ----------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("protocol", [2, 4, 5, "py2"])
def test_cifar10_layout_and_pixels(tmp_path: Path, small_rows: None, protocol: int | str) -> None:
    files = write_cifar10(tmp_path, protocol=protocol)
    ds = build_dataset(DataConfig(name="cifar10", root=str(tmp_path)), "train")
    assert len(ds) == 20 and ds.classes == [f"c{i}" for i in range(10)]
    data, labels = files["data_batch_2"]
    i, c, r, k = 1, 2, 5, 30  # image 1 of batch 2, blue, row 5, col 30
    assert ds.images[4 + i, r, k, c] == data[i, c * 1024 + r * 32 + k]
    assert ds.labels[4 + i] == labels[i]
    x, y = ds.get_batch(np.array([4 + i]))
    assert x[0, c, r, k] == data[i, c * 1024 + r * 32 + k] and int(y[0]) == labels[i]
    test = build_dataset(DataConfig(name="cifar10", root=str(tmp_path / "cifar-10-batches-py")),
                         "test")
    assert len(test) == 4 and test.labels.tolist() == files["test_batch"][1]


def test_cifar100(tmp_path: Path, small_rows: None) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": _cifar_rows(n), b"fine_labels": list(range(90, 90 + n)),
                         b"coarse_labels": [0] * n}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [b"a"] * 20}, f)
    ds = build_dataset(DataConfig(name="cifar100", root=str(tmp_path)))
    assert len(ds) == 6 and ds.num_classes == 100 and ds.labels.tolist() == list(range(90, 96))
    assert ds.classes[93] == "f93"


def test_cifar_missing_and_incomplete(tmp_path: Path, small_rows: None) -> None:
    with pytest.raises(DataError, match="cifar-10-batches-py.*data_batch_1"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    with open(folder / "data_batch_3", "wb") as f:  # 3 rows where 4 are expected
        pickle.dump({b"data": _cifar_rows(3), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match="incomplete"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _cifar_rows(4)})[:50])
    with pytest.raises(DataError, match="corrupt or incomplete"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_restricted_unpickler_refuses_code(tmp_path: Path, small_rows: None) -> None:
    target = tmp_path / "pwned"
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": _Evil(target), b"labels": [0]}))
    with pytest.raises(DataError, match="not allowed"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert not target.exists()
    for payload in (pickle.dumps(_Evil(target)), pickle.dumps(io.BytesIO)):
        batch.write_bytes(payload)
        with pytest.raises(DataError):
            cifar.safe_unpickle(batch)
    assert not target.exists()


def _tar_gz(src: Path, arcname: str, dest: Path) -> str:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    return hashlib.md5(dest.read_bytes()).hexdigest()


def test_download_verify_extract(tmp_path: Path, small_rows: None,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = _tar_gz(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py", archive)
    assert md5_file(archive) == md5
    url = archive.as_uri()
    with pytest.raises(DataError, match=f"expected {'0' * 32}, got {md5}.*delete"):
        download_url(url, tmp_path / "bad" / "a.tar.gz", md5="0" * 32)
    spec = dataclasses.replace(cifar.CIFAR10, url=url, md5=md5)
    monkeypatch.setitem(cifar.SPECS, "cifar10", spec)
    root = tmp_path / "data"
    ds = build_dataset(DataConfig(name="cifar10", root=str(root), download=True))
    assert len(ds) == 20 and (root / "cifar-10-python.tar.gz").is_file()
    with pytest.raises(DataError, match="download of .* failed"):
        download_url((tmp_path / "nothing.tar.gz").as_uri(), tmp_path / "n.tar.gz")


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt"])
def test_extract_rejects_unsafe_members(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="unsafe member"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


# ----------------------------------------------------------------------------- STL-10
def test_stl10_column_major(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stl10, "ROWS", {"train": 2, "test": 1, "unlabeled": 3})
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    raw = np.zeros(2 * stl10.IMAGE_BYTES, np.uint8)
    n, c, h, w = 1, 1, 5, 70  # image 1, green, row 5, column 70
    raw[n * stl10.IMAGE_BYTES + c * 96 * 96 + w * 96 + h] = 200  # channel planes column-major
    raw.tofile(folder / "train_X.bin")
    np.array([1, 10], np.uint8).tofile(folder / "train_y.bin")
    unl = RNG.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    unl.transpose(0, 3, 2, 1).tofile(folder / "unlabeled_X.bin")
    ds = build_dataset(DataConfig(name="stl10", root=str(tmp_path)))
    assert ds.images.shape == (2, 96, 96, 3) and ds.labels.tolist() == [0, 9]
    assert ds.images[n, h, w, c] == 200 and int(ds.images.sum()) == 200
    x, _ = ds.get_batch([1, 0])
    assert x[0, c, h, w] == 200 and int(x.sum()) == 200 and ds[1][0][c, h, w] == 200
    u = build_dataset(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled"))
    assert u.labels is None and np.array_equal(u.images, unl) and u[0][1] == -1
    both = build_dataset(DataConfig(name="stl10", root=str(folder), split="train+unlabeled"))
    assert isinstance(both.images, np.memmap) and both.labels.tolist() == [0, 9, -1, -1, -1]
    assert np.array_equal(both.images[2:], unl) and both.images[n, h, w, c] == 200
    with pytest.raises(DataError, match="test_X.bin, test_y.bin"):
        build_dataset(DataConfig(name="stl10", root=str(tmp_path)), "test")
    (folder / "train_X.bin").write_bytes(raw.tobytes()[:-5])
    with pytest.raises(DataError, match="incomplete"):
        build_dataset(DataConfig(name="stl10", root=str(tmp_path)))


# ----------------------------------------------------------------------------- ImageNet-32
def _imagenet32(folder_train: Path, folder_val: Path, n: int = 3) -> np.ndarray:
    folder_train.mkdir(parents=True, exist_ok=True)
    folder_val.mkdir(parents=True, exist_ok=True)
    all_data = []
    for i in range(1, 11):
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.savez(folder_train / f"train_data_batch_{i}.npz", data=data,
                 labels=np.array([1, 500, 1000][:n]), mean=np.zeros(3072))
        all_data.append(data)
    np.savez(folder_val / "val_data.npz", data=RNG.integers(0, 256, (2, 3072), dtype=np.uint8),
             labels=np.array([7, 8]))
    return np.concatenate(all_data)


def test_imagenet32_cache_built_once(tmp_path: Path) -> None:
    data = _imagenet32(tmp_path / "Imagenet32_train_npz", tmp_path / "Imagenet32_val_npz")
    cfg = DataConfig(name="imagenet32", root=str(tmp_path))
    ds = build_dataset(cfg)
    cache = tmp_path / ".rcs_cache" / "imagenet32_train.images.npy"
    mtime = cache.stat().st_mtime_ns
    assert isinstance(ds.images, np.memmap) and not ds.images.flags.writeable
    assert len(ds) == 30 and ds.num_classes == 1000 and ds.labels[:3].tolist() == [0, 499, 999]
    assert np.array_equal(ds.images[7], data[7].reshape(3, 32, 32).transpose(1, 2, 0))
    ds2 = build_dataset(cfg)
    assert cache.stat().st_mtime_ns == mtime and ds2.fingerprint() == ds.fingerprint()
    val = build_dataset(cfg, "test")
    assert val.labels.tolist() == [6, 7]


def test_imagenet32_flat_and_missing(tmp_path: Path) -> None:
    _imagenet32(tmp_path, tmp_path)
    cache = tmp_path / "cache"
    ds = build_dataset(DataConfig(name="imagenet32", root=str(tmp_path), cache_dir=str(cache)))
    assert len(ds) == 30 and (cache / "imagenet32_train.images.npy").is_file()
    (tmp_path / "train_data_batch_7.npz").unlink()
    with pytest.raises(DataError, match="train_data_batch_7.npz"):
        build_dataset(DataConfig(name="imagenet32", root=str(tmp_path)))
    with pytest.raises(DataError, match="Imagenet32_train_npz"):
        build_dataset(DataConfig(name="imagenet32", root=str(tmp_path / "nowhere")))


def _build_logged(cache: str, log: str, q: object) -> None:
    def build(writer: CacheWriter) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        out = writer.allocate(4, 2, 2)
        out[:] = np.arange(48, dtype=np.uint8).reshape(4, 2, 2, 3)
        writer.set_labels(np.arange(4))

    images, labels = cached_arrays(cache, "t", ["sig"], build)
    q.put((int(images.sum()), labels.tolist()))


def test_cache_built_by_one_process(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    log = tmp_path / "log"
    procs = [ctx.Process(target=_build_logged, args=(str(tmp_path / "c"), str(log), q))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(log.read_text().split()) == 1  # decoded once, the others waited on the lock
    assert results == [(int(np.arange(48).sum()), [0, 1, 2, 3])] * 3


# ----------------------------------------------------------------------------- npz / folder
def test_npz_real_cifar10_subset(cifar10_subset_path: Path) -> None:
    tr = build_dataset(DataConfig(name="npz", root=str(cifar10_subset_path)))
    te = build_dataset(DataConfig(name="npz", root=str(cifar10_subset_path)), "test")
    assert (len(tr), len(te)) == (5551, 1017) and tr.images.shape[1:] == (32, 32, 3)
    for ds in (tr, te):
        assert ds.labels.min() == 0 and ds.labels.max() == 9 and ds.num_classes == 10
    assert tr.classes[0] == "airplane" and len(np.unique(tr.labels)) == 10


def test_npz_keys_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = RNG.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=x, labels=np.arange(5))
    ds = build_dataset(DataConfig(name="npz", root=str(tmp_path / "a.npz")))
    assert np.array_equal(ds.images, x) and ds.labels.tolist() == list(range(5))
    with pytest.raises(DataError, match="x_test"):
        build_dataset(DataConfig(name="npz", root=str(tmp_path / "a.npz")), "test")
    np.savez(tmp_path / "b.npz", x=x[..., 0])  # grayscale, unlabeled
    monkeypatch.setattr(npz, "CACHE_ABOVE_BYTES", 0)
    g = build_dataset(DataConfig(name="npz", root=str(tmp_path / "b.npz")))
    assert isinstance(g.images, np.memmap) and g.labels is None
    assert np.array_equal(g.images[..., 2], x[..., 0])
    with pytest.raises(DataError, match="2 .npz files"):
        build_dataset(DataConfig(name="npz", root=str(tmp_path)))


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for cls, rgb in colours.items():
        (root / cls).mkdir(parents=True)
        for j, size in enumerate([(10, 12), (16, 16)]):
            Image.new("RGB", size, rgb).save(root / cls / f"{j}.png")
    Image.new("L", (5, 5), 128).save(root / "dog" / "gray.PNG")
    cfg = DataConfig(name="folder", root=str(root), image_size=8)
    ds = build_dataset(cfg)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert ds.images.shape == (5, 8, 8, 3) and isinstance(ds.images, np.memmap)
    assert (ds.images[:2] == [255, 0, 0]).all() and (ds.images[2:4] == [0, 0, 255]).all()
    assert (ds.images[4] == 128).all()  # dog/gray.PNG, grayscale -> RGB
    cache = next((root / ".rcs_cache").glob("*.images.npy"))
    mtime = cache.stat().st_mtime_ns
    assert build_dataset(cfg).classes == ["cat", "dog"] and cache.stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="no .png"):
        build_dataset(DataConfig(name="folder", root=str(tmp_path / "imgs" / "cat")))


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_deterministic() -> None:
    cfg = DataConfig(name="synthetic", synthetic_size=200, num_classes=5, image_size=16)
    a, b = build_dataset(cfg), build_dataset(cfg)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert a.images.shape == (200, 16, 16, 3) and np.bincount(a.labels).tolist() == [40] * 5
    test = build_dataset(cfg, "test")
    assert len(test) == 50 and a.fingerprint() != test.fingerprint()
    means = np.stack([a.images[a.labels == c].mean(0) for c in range(5)])  # classes differ
    dist = np.abs(means[:, None] - means[None]).mean(axis=(2, 3, 4))
    assert dist[~np.eye(5, dtype=bool)].min() > 5


# ----------------------------------------------------------------------------- ImageDataset
def test_image_dataset_access_and_subset() -> None:
    x = RNG.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    ds = ImageDataset(x, np.arange(10) % 3, name="t")
    idx = np.array([7, 2, 2, 9])
    xb, yb = ds.get_batch(idx)
    assert xb.dtype == torch.uint8 and torch.equal(xb, torch.from_numpy(x[idx]).permute(0, 3, 1, 2))
    assert yb.tolist() == [1, 2, 2, 0] and ds[7][1] == 1 and torch.equal(ds[-1][0], xb[3])
    sl = ds.subset(np.arange(2, 6))
    assert np.shares_memory(sl.images, x) and sl.parent_indices.tolist() == [2, 3, 4, 5]
    sub = ds.subset([9, 1, 4])
    assert sub.num_classes == 3 and np.array_equal(sub.images, x[[9, 1, 4]])
    sub2 = sub.subset([2, 0])
    assert np.array_equal(sub2.get_batch([0, 1])[0].numpy(), x[[4, 9]].transpose(0, 3, 1, 2))
    with pytest.raises(IndexError):
        ds.get_batch([10])
    f = ds.fingerprint()
    assert f == ImageDataset(x.copy(), np.arange(10) % 3).fingerprint()
    assert f != ImageDataset(x, np.arange(10) % 2).fingerprint()
    assert f != ImageDataset(x, None).fingerprint()
    limited = build_dataset(DataConfig(name="synthetic", synthetic_size=50, limit=20))
    assert len(limited) == 20


def test_train_val_split() -> None:
    cand, val = train_val_split(1000, 0.013, seed=3)
    assert len(val) == 13 and len(cand) == 987 and not np.intersect1d(cand, val).size
    assert np.all(np.diff(cand) > 0) and np.all(np.diff(val) > 0) and cand.dtype == np.int64
    assert np.array_equal(np.union1d(cand, val), np.arange(1000))
    assert np.array_equal(train_val_split(1000, 0.013, 3)[1], val)
    assert len(train_val_split(50, 0.0, 0)[1]) == 0


# ----------------------------------------------------------------------------- index batches
def test_index_batches() -> None:
    idx = np.arange(100, 123)  # 23 indices
    b0 = index_batches(idx, 5, True, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(b0, index_batches(idx, 5, True, 1, 0)))
    flat = np.concatenate(b0)
    assert sorted(flat.tolist()) == idx.tolist() and [len(b) for b in b0] == [5, 5, 5, 5, 3]
    assert not np.array_equal(flat, np.concatenate(index_batches(idx, 5, True, 1, 1)))
    assert np.array_equal(np.concatenate(index_batches(idx, 5, False, 1, 0)), idx)
    shards = [index_batches(idx, 4, True, 1, 0, rank=r, world_size=3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and all(len(np.concatenate(s)) == 8 for s in shards)
    seen = np.concatenate([np.concatenate(s) for s in shards])
    assert set(seen.tolist()) == set(idx.tolist()) and len(seen) == 24  # one padded repeat
    dl = [index_batches(idx, 4, True, 1, 0, rank=r, world_size=3, drop_last=True)
          for r in range(3)]
    assert all([len(b) for b in s] == [4] for s in dl)  # 7 per rank -> one full batch
    assert len(np.unique(np.concatenate([np.concatenate(s) for s in dl]))) == 12
    assert [len(b) for b in index_batches(np.arange(2), 4, True, 0, 0, 3, 5)] == [1]  # wrapped
