"""The write-ahead log beside an index generation: one framed, checksummed record per commit.

A record is a frame (magic, header length, body length, sha256 of header + body), a JSON
header, then the raw float32 arrays the header lists. A record is committed once its append
has been fsynced. A crash mid-append leaves a torn record at the end of the file: readers
ignore it and the next writer cuts it off before appending. A record that fails its checksum
with more data after it is not a torn append but damage: that is an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.errors import IndexCorruptError
from crossmodal.storage import atomic_write

MAGIC = b"CMWAL01\n"
_FRAME = struct.Struct("<8sIQ32s")  # magic, header bytes, body bytes, sha256(header + body)


@dataclass
class Record:
    header: dict
    arrays: list[np.ndarray]
    end: int  # file offset just past this record


@dataclass
class LogRead:
    records: list[Record]
    valid_end: int  # offset past the last whole record: a torn tail starts here
    size: int


def encode_record(header: dict, arrays: list[np.ndarray]) -> bytes:
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    head = json.dumps({**header, "arrays": [list(a.shape) for a in arrays]},
                      ensure_ascii=False).encode()
    body = b"".join(a.tobytes() for a in arrays)
    digest = hashlib.sha256(head)
    digest.update(body)
    return _FRAME.pack(MAGIC, len(head), len(body), digest.digest()) + head + body


def create(path: Path) -> None:
    """An empty log (atomically, so a crash never leaves a half-made one)."""
    atomic_write(path, lambda handle: None)


def append(path: Path, record: bytes) -> int:
    """Append one record durably; returns the file's new length. Commit point of a change.

    If the write or its fsync fails (a full disk, an I/O error) the record is cut off again
    before the error is raised: a whole record left in the page cache would otherwise read as
    committed, to other processes now and to everyone after a restart, if it reached the disk.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(record)
            while view:  # os.write may write part of it: a short write is not an error
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):  # a torn tail is ignored by readers anyway
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise
        return start + len(record)
    finally:
        os.close(fd)


def truncate(path: Path, end: int) -> None:
    """Cut a torn tail (a crashed writer's unfinished record) off before appending."""
    with open(path, "r+b") as handle:
        handle.truncate(end)
        handle.flush()
        os.fsync(handle.fileno())


def read(path: Path, start: int = 0) -> LogRead:
    """The whole records from offset `start` on; FileNotFoundError if the log is gone."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read()
    records, offset = [], 0
    while len(data) - offset >= _FRAME.size:
        magic, head_len, body_len, digest = _FRAME.unpack_from(data, offset)
        end = offset + _FRAME.size + head_len + body_len
        if magic != MAGIC or end > len(data):
            break  # torn: a crash cut this append short
        head = data[offset + _FRAME.size : offset + _FRAME.size + head_len]
        body = memoryview(data)[end - body_len : end]
        check = hashlib.sha256(head)
        check.update(body)
        if check.digest() != digest:
            if end < len(data):
                raise IndexCorruptError(
                    f"{path}: record at byte {start + offset} fails its checksum and more "
                    "records follow: the log is damaged (restore the index from a backup)")
            break  # the last record, half-written
        header = json.loads(head)
        records.append(Record(header, _arrays(body, header["arrays"]), start + end))
        offset = end
    return LogRead(records, start + offset, start + len(data))


def _arrays(body: memoryview, shapes: list[list[int]]) -> list[np.ndarray]:
    arrays, offset = [], 0
    for rows, cols in shapes:
        size = rows * cols * 4
        arrays.append(np.frombuffer(body[offset : offset + size], np.float32).reshape(rows, cols))
        offset += size
    return arrays


def problems(path: Path) -> list[str]:
    """What is wrong with a log ([]: every whole record checks out; a torn tail is fine)."""
    try:
        read(path)
    except FileNotFoundError:
        return [f"{path.name} is missing"]
    except (IndexCorruptError, ValueError, KeyError) as exc:
        return [str(exc)]
    return []
