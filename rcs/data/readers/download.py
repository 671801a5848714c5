"""Downloads with MD5 verification and safe archive extraction.

``download_url`` accepts any URL ``urllib`` opens (``https://``, ``http://``, ``file://``), writes
to a temp file beside the destination, shows a progress bar and checks the MD5 before the file
takes its final name. ``extract_archive`` refuses members that would land outside the target
folder (absolute paths, ``..``, links pointing out, device files).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from rcs.errors import DataError
from rcs.utils.atomic import atomic_path
from rcs.utils.progress import bar

CHUNK = 1 << 20


def md5_file(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def check_md5(path: str | Path, md5: str) -> None:
    """Raise :class:`DataError` naming the expected and actual MD5 when they differ."""
    actual = md5_file(path)
    if actual.lower() != md5.lower():
        raise DataError(f"MD5 mismatch for {path}: expected {md5}, got {actual}. The file is "
                        f"corrupt or incomplete: delete {path} and retry the download.")


def download_url(url: str, dest: str | Path, md5: str | None = None, timeout: float = 60.0
                 ) -> Path:
    """Download ``url`` to ``dest`` (skipped when ``dest`` exists with the right MD5).

    The bytes go to a temp file first; a file with a wrong MD5 is still moved to ``dest`` so it
    can be inspected, and a :class:`DataError` tells to delete it and retry.
    """
    dest = Path(dest)
    if dest.exists():
        if md5 is not None:
            check_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as resp, \
                open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            pbar = bar(total or None, desc=f"download {dest.name}", unit="B")  # type: ignore
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    out.write(block)
                    pbar.update(len(block))
            finally:
                pbar.close()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"download of {url} failed ({e}). Check the network, or download it by "
                        f"hand and place it at {dest}.") from e
    if md5 is not None:
        check_md5(dest, md5)
    return dest


def _is_within(base: Path, target: Path) -> bool:
    base = base.resolve()
    try:
        target.resolve().relative_to(base)
    except ValueError:
        return False
    return True


def _check_member(m: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    name = m.name
    parts = Path(name).parts
    bad = (os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts
           or not _is_within(dest, dest / name))
    if m.issym() or m.islnk():
        link_base = (dest / name).parent if m.issym() else dest
        bad = bad or os.path.isabs(m.linkname) or not _is_within(dest, link_base / m.linkname)
    if m.isdev() or m.isfifo():
        bad = True
    if bad:
        raise DataError(f"archive {archive} has an unsafe member {name!r} (absolute path, '..', "
                        f"a link leaving the folder, or a device file); refusing to extract it.")


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract a ``.tar``, ``.tar.gz`` or ``.tgz`` into ``dest`` after checking every member."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, dest, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706 filters
                tar.extractall(dest, members=members)  # noqa: S202 - members checked above
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot extract {archive} ({e}); delete it and retry the download") from e
    return dest


def download_and_extract(url: str, root: str | Path, filename: str, md5: str,
                         remove_archive: bool = False) -> Path:
    """Download ``url`` to ``root/filename`` (MD5-checked) and extract it into ``root``."""
    root = Path(root)
    archive = download_url(url, root / filename, md5)
    extract_archive(archive, root)
    if remove_archive:
        archive.unlink(missing_ok=True)
    return root
