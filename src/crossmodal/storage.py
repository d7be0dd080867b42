"""Crash-safe writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np


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
