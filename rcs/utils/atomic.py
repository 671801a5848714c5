"""Atomic file writes: write to a temp file in the same folder, fsync, then rename.

A kill at any moment leaves either the old file or the new one, never a torn file. The new file
gets the mode an ordinary ``open()`` would give it (``0o666`` minus the umask), not the ``0o600``
of the temp file, so collaborators on a shared cluster can read run outputs. A full disk, a
quota, a read-only or forbidden folder become a :class:`rcs.errors.StorageError` that names the
file, the free space and says that the previous file is intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                  errno.EFBIG: "file too large (a file size limit, `ulimit -f`, is set)",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted"}
"""OSError numbers that mean "this folder cannot take the file" (not a bug in rcs)."""


def current_umask() -> int:
    """The process umask (read from /proc on Linux, so no other thread sees it change)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def storage_error(exc: BaseException, path: str | Path, what: str = "file") -> Exception | None:
    """A :class:`StorageError` for an OSError that means the disk or folder refused the write
    (None for any other exception)."""
    from rcs.errors import StorageError

    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    path = Path(path)
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), Path("."))
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.2f} MiB free there"
    except OSError:
        free = "free space unknown"
    kept = (f"the previous {path.name} is intact" if path.exists()
            else "nothing was written")
    fix = ("free some space (or raise the limit), then run the same command again" if exc.errno
           in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else
           "make the folder writable (or choose another --out), then run the command again")
    return StorageError(f"{STORAGE_ERRNOS[exc.errno]} while writing the {what} '{path}' "
                        f"({free}); {kept}. To continue: {fix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` atomically.

    ``what`` names the file in a storage error ("checkpoint", "coreset", ...).
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # make the rename durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as e:
        if tmp_path is not None:  # free its space before measuring what is left
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        err = storage_error(e, path, what)
        if err is None:
            raise
        raise err from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], what: str = "file"
                 ) -> Path:
    """Call ``write(fileobj)`` on a temp file and move it onto ``path``."""
    with atomic_path(path, what) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), what)
