"""Where crossmodal keeps caches (CROSSMODAL_CACHE overrides; tests point it at tmp), the one
cache-key scheme, and file hashing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("CROSSMODAL_CACHE", Path.home() / ".cache" / "crossmodal"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


PACKAGE_DIR = Path(__file__).resolve().parent  # the installed package: never written to


def export_cache_dir() -> Path:
    """Where towers: graphs exported for ONNX Runtime on first use live (CROSSMODAL_ONNX_CACHE
    overrides; default CACHE/onnx). The test suite shares one across tests: exports are slow."""
    override = os.environ.get("CROSSMODAL_ONNX_CACHE")
    if override:
        path = Path(override)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return cache_dir("onnx")


class NotRegularFileError(OSError):
    """A path that is a FIFO, a device, a socket or a folder, where a file's bytes were
    expected (reading one could block forever or never end)."""


def file_kind(mode: int) -> str:
    """A name for what a stat mode is, for messages."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular_file(path: str | Path) -> BinaryIO:
    """Open `path` for reading only if it is a regular file (symlinks followed).

    Checked twice: by stat before opening (opening a FIFO with no writer blocks), and by
    fstat of what was opened, non-blocking, so a path swapped for a FIFO or a device between
    the two still cannot hang or flood the reader."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(errno.EINVAL, f"{file_kind(mode)}, not a regular file",
                                  str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"{file_kind(mode)}, not a regular file",
                                      str(path))
        os.set_blocking(fd, True)  # regular files never block; plain reads from here on
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """Chunked, so large weight or vector files never sit whole in memory; regular files
    only (a FIFO or /dev/zero would never end)."""
    digest = hashlib.sha256()
    with open_regular_file(path) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_key(parts: object) -> str:
    """The one cache key: a digest of JSON-able parts (model fingerprint, data identity,
    preprocessing, precision, ...). Sorted keys, so dict order never matters; text as is
    (not \\u-escaped). A cache made under other parts is a miss, never a wrong hit."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
