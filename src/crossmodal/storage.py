"""Crash-safe writes: temp file (or folder) beside the target, fsync, rename, fsync the parent.

The ground floor: it imports nothing of crossmodal, so every layer may use it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Container, Iterator
from pathlib import Path
from typing import IO

import numpy as np

# How old a file no committed state names must be before a writer deletes it as a crashed
# writer's leftover: a younger one may be another process's write in flight.
LEFTOVER_GRACE_S = 3600.0


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file; only a complete, fsynced file replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; an index is meant to be shared
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, writer: Callable[[IO], None], mode: str = "wb") -> None:
    with atomic_file(path, mode) as handle:
        writer(handle)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.save(handle, array))


def atomic_save_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None
                            ) -> None:
    """Tensors (name -> torch tensor) as one safetensors file, written atomically."""
    from safetensors.torch import save

    blob = save({name: t.detach().contiguous() for name, t in tensors.items()}, metadata)
    atomic_write(Path(path), lambda handle: handle.write(blob))


def atomic_save_json(path: Path, data: object) -> None:
    atomic_write(
        path, lambda handle: json.dump(data, handle, ensure_ascii=False, indent=1), mode="w"
    )


def remove_stale_files(folder: Path, keep: Container[str], min_age_s: float = LEFTOVER_GRACE_S,
                       owned: Callable[[str], bool] = lambda name: True) -> list[Path]:
    """Delete the plain files in `folder` that a crashed writer left: names `owned` accepts
    (the kind of file the caller writes there) that `keep` does not list, last modified over
    `min_age_s` ago (a younger one may be another process's write in flight). Returns them."""
    cutoff = time.time() - min_age_s
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name in keep or not owned(entry.name):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            if entry.is_file(follow_symlinks=False) and entry.stat(
                    follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def fsync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then each folder, deepest first."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Build a folder under a private name beside `target`; when the block ends without an
    error it is fsynced whole and takes `target`'s name (an old `target` is moved aside first
    and removed after the swap). On an error the private folder goes and `target` is as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = None
    try:
        os.chmod(work, 0o755)  # mkdtemp makes 0700; what we write is meant to be shared
        yield work
        fsync_tree(work)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{work.name}")
            target.rename(old)
        work.rename(target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
