"""Shared by the dataset readers: checked JSON/JSONL/CSV reading and a deduplicating builder.

Every error names the file and the line (`path:LINE: ...`) or the entry (`path: images[3]: ...`)
and says what was expected there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError
from crossmodal.paths import open_regular_file

_OLD_MAC_LINE_END = re.compile(r"(?<=\r)(?!\n)")  # a lone \r ends a line, as in text mode
_KINDS = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def clean(text: str) -> str:
    """Whitespace normalised: runs of spaces, tabs and newlines become one space."""
    return " ".join(text.split())


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def local_path(root: Path, *parts: str) -> Path:
    """root/parts with '..' and '.' folded, so one file is one key however it is spelled."""
    return Path(os.path.normpath(root.joinpath(*parts)))


class NotUtf8Error(BadInputError):
    """A text file that is not UTF-8: names the file, the line and the first bad byte."""

    def __init__(self, path: Path, line: int, byte: int) -> None:
        self.path, self.line, self.byte = path, line, byte
        super().__init__(f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}): save the file "
                         f"as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > new.txt`")


def decode_utf8(data: bytes, path: Path, first_line: int = 1) -> str:
    """UTF-8 text (a leading BOM dropped when first_line is 1), or a NotUtf8Error."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise NotUtf8Error(path, line, data[exc.start]) from None


def read_text(path: Path, what: str = "text file") -> str:
    """A whole UTF-8 file; not UTF-8 is a NotUtf8Error naming file and line."""
    path = require_file(path, what)
    with open_regular_file(path) as handle:  # a path swapped for a FIFO cannot hang us
        return decode_utf8(handle.read(), path)


def text_lines(path: Path, what: str = "text file") -> Iterator[tuple[int, str]]:
    """(line number, line with its ending) of a UTF-8 file, read as it goes; a line that is
    not UTF-8 is a NotUtf8Error naming it."""
    number = 0
    with open_regular_file(require_file(path, what)) as handle:
        for raw in handle:
            text = decode_utf8(raw, path, number + 1)
            for line in _OLD_MAC_LINE_END.split(text) if "\r" in text else (text,):
                if line:
                    number += 1
                    yield number, line


def require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} not found: {path}")
    return path


def expect_object(value: object, where: str, keys: str) -> dict:
    if not isinstance(value, dict):
        raise BadInputError(f"{where}: expected an object with {keys}, got {short(value)}")
    return value


def get(record: dict, key: str, kinds: tuple[type, ...], where: str, optional: bool = False):
    """record[key] checked against kinds (None when optional and absent/null)."""
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or isinstance(value, bool):
        wanted = " or ".join(_KINDS.get(kind, kind.__name__) for kind in kinds)
        got = "nothing" if key not in record else short(value)
        raise BadInputError(f"{where}: expected '{key}' to be {wanted}, got {got}")
    return value


def read_json(path: Path, what: str = "JSON file") -> object:
    path = require_file(path, what)
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc


def json_list(data: object, path: Path, key: str | None = None) -> list:
    """data (or data[key]) checked to be a list."""
    if key is not None:
        data = expect_object(data, str(path), f"a '{key}' list")
        data = data.get(key)
    if not isinstance(data, list):
        what = f"'{key}' to be a list" if key else "a JSON list of objects"
        raise BadInputError(f"{path}: expected {what}, got {type(data).__name__}")
    return data


def iter_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, value) per non-blank line."""
    for number, line in text_lines(path, "JSONL file"):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc


class Builder:
    """A RetrievalDataset under construction: one image row per file, however often named."""

    def __init__(self, name: str) -> None:
        self.data = RetrievalDataset(name)
        self._rows: dict[Path, int | None] = {}
        self._paths: dict[str, Path] = {}

    def skip(self, what: str, why: str) -> None:
        self.data.skipped.append((what, why))

    def image(self, image_id: str, path: Path, where: str) -> int | None:
        """The row of this image file; None (and the record skipped) when it is missing."""
        known = self._paths.setdefault(image_id, path)
        if known != path:
            raise BadInputError(f"{where}: image id {image_id!r} names {path}, "
                                f"but an earlier record gave it {known}")
        if path not in self._rows:
            self._rows[path] = self.data.add_image(image_id, path) if path.is_file() else None
        row = self._rows[path]
        if row is None:
            self.skip(where, f"image file missing: {path}")
        return row

    def caption(self, text: str, where: str) -> str | None:
        """The caption whitespace normalised; None (and recorded) when it is empty."""
        text = clean(text)
        if not text:
            self.skip(where, "empty caption")
        return text or None
