"""How every room touches files: bounded reads, sha256 of a file, atomic writes.

One implementation of each, so a zoo, a config, a split file and a submission
are all read and written the same careful way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def read_bounded(path: Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file `path`, refused when over `max_bytes`.

    At most ``max_bytes + 1`` bytes are ever read, whatever size the file reports,
    so a device (``/dev/zero``) or a file growing under us cannot exhaust memory.
    The file is opened non-blocking, so a FIFO with no writer is refused, not waited on.

    Raises:
      ValueError: not a regular file, or over the limit; names the file, `what` and the limit.
      OSError: the file cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file; expected a {what} file")
        if info.st_size > max_bytes:
            raise ValueError(f"{path}: {what} is {info.st_size} bytes, over the {max_bytes}-byte limit")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: {what} is over the {max_bytes}-byte limit (it grew while read)")
    return raw


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (`hashlib.file_digest`)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success, fsync and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # After the writer: safetensors replaces the file it is given with a mode-0600 one.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, doc: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
