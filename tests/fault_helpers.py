"""Fault injection for the write path: a disk that fills up under one folder.

Every durable write in crossmodal ends in `os.fsync` (the log, a generation's files, the
manifest, a stored upload), and the log's append goes through `os.write`; patching those two
makes the disk look full for the files under one folder only, without root or a real small
filesystem. Directories are left alone: a failed fsync of a folder after a rename is not what
a full disk does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class FullDisk:
    """While `full` is true, writing a regular file under `folder` fails with ENOSPC (or
    `error`); files under `spare` are left alone.

    Mode "fsync": every write lands, the fsync fails (a whole log record is in the file).
    Mode "write": `os.write` (the log's append) writes part, then fails, as a real full disk
    does mid-record; files written through Python's buffered files fail at their fsync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path, mode: str = "fsync",
                 spare: Path | None = None, error: int = errno.ENOSPC):
        self.folder = os.path.realpath(folder)
        self.spare = os.path.realpath(spare) + os.sep if spare else None  # still writable
        self.mode = mode
        self.error = error  # ENOSPC, or e.g. EIO
        self.full = False
        self.allow = 0  # fsyncs that still succeed once full (to fail at a later file)
        self.failures = 0
        real_fsync, real_write = os.fsync, os.write

        def fsync(fd: int) -> None:
            if self.full and self._under(fd):
                if self.allow > 0:
                    self.allow -= 1
                    return real_fsync(fd)
                self.failures += 1
                raise _error(self.error)
            return real_fsync(fd)

        def write(fd: int, data) -> int:
            if self.full and self.mode == "write" and self._under(fd):
                if len(data) > 1:  # part of it lands: the caller writes the rest, and fails
                    return real_write(fd, bytes(data[: len(data) // 2]))
                self.failures += 1
                raise _error(self.error)
            return real_write(fd, data)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "write", write)

    def _under(self, fd: int) -> bool:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        return target.startswith(self.folder + os.sep) and not (
            self.spare and target.startswith(self.spare))

    @contextlib.contextmanager
    def filled(self, allow: int = 0) -> Iterator[FullDisk]:
        self.full, self.allow = True, allow
        try:
            yield self
        finally:
            self.full = False


def needs_proc() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("fault injection maps file descriptors to paths through /proc")


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "8m") -> Iterator[Path]:
    """A real small filesystem at `where` (skips the test where mounting is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the filesystem holding `folder` up to `leave_bytes` free; returns the filler."""
    filler = folder / "filler.bin"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave_bytes, 0))
    return filler
