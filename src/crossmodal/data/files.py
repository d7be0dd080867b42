"""Turn folders, image files and caption files into items to index.

Captions come from a sidecar text file beside each image (`dog.jpg` -> `dog.txt` or
`dog.jpg.txt`, one caption a line) or from caption files given with --captions:
  * `.txt`/`.tsv`: `IMAGE<TAB>caption` or Flickr style `IMAGE#K caption` / `IMAGE#enc#K caption`
  * `.jsonl`: one `{"image": ..., "caption": ...}` a line (`image_path`/`text` also accepted)
  * `.json`: a list of such objects, or `{IMAGE: [captions]}`
IMAGE matches an image by relative path, file name, or file name without extension.

Symlinked folders are followed, each real folder walked once: a symlink loop, or a second
link to a folder already walked, is reported and not walked again. What is left out is
reported in two lists: files (absolute paths) and captions (`FILE:LINE`), each with a reason.
Only regular files are taken (a FIFO or a link to /dev/zero is reported, never opened), and
whatever goes wrong with one file (a link loop, a name the file system or UTF-8 refuses) is
that file's reported skip: the others are collected.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.data.images import IMAGE_EXTENSIONS, is_image_path
from crossmodal.data.parsing import (
    NotUtf8Error,
    iter_jsonl,
    json_list,
    read_json,
    read_text,
    require_file,
)
from crossmodal.errors import BadInputError
from crossmodal.item_ids import file_item_id
from crossmodal.paths import file_kind

_FLICKR_KEY = re.compile(r"^(?P<image>[^\s#]+)#(?:[a-z]+#)?\d+$")
EMPTY_CAPTION = "empty caption"
Caption = tuple[str, str]  # (text, where it came from: "FILE:LINE" or "FILE: entry N")


@dataclass
class ItemSource:
    id: str
    path: Path
    captions: list[str] = field(default_factory=list)


@dataclass
class CollectReport:
    items: list[ItemSource] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, why)
    skipped_captions: list[tuple[str, str]] = field(default_factory=list)  # (FILE:LINE, why)

    @property
    def empty_captions(self) -> int:
        return sum(1 for _, why in self.skipped_captions if why == EMPTY_CAPTION)

    def skip_file(self, path: str | Path, why: str) -> None:
        self.skipped_files.append((shown_path(os.path.abspath(path)), why))


def shown_path(path: str | Path) -> str:
    """`path` printable and storable as UTF-8: bytes a file name holds that are not UTF-8
    (kept by Python as surrogates) are shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _plain_walk(top: Path, visited: set[str], links: list[Path], report: CollectReport,
                ) -> list[Path]:
    """Files under top without following links; symlinked folders are queued in `links`."""
    found = []

    def unreadable(error: OSError) -> None:  # os.walk would skip such a folder silently
        report.skip_file(error.filename, f"cannot read folder: {error.strerror}")

    for folder, dirs, files in os.walk(top, onerror=unreadable):
        visited.add(os.path.realpath(folder))
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = Path(folder) / name
            if path.is_symlink():
                links.append(path)
            elif not _already_walked(path, visited, report):  # walked through a link before
                kept.append(name)
        dirs[:] = kept
        found.extend(Path(folder) / f for f in sorted(files) if not f.startswith("."))
    return found


def _already_walked(folder: Path, visited: set[str], report: CollectReport) -> bool:
    real = os.path.realpath(folder)
    if real in visited:
        report.skip_file(folder, f"folder already walked ({real}): not walked again")
    return real in visited


def _walk_images(root: Path, report: CollectReport) -> list[Path]:
    """Files under root, as `find -L` lists them but each real folder once: the real
    folders first, then the symlinked ones (under the link's path) whose target was not
    walked yet; a link back into the walk (a loop or a second name) is reported."""
    visited: set[str] = set()
    links: list[Path] = []
    found = _plain_walk(root, visited, links, report)
    while links:
        link = links.pop(0)
        if not _already_walked(link, visited, report):
            found.extend(_plain_walk(link, visited, links, report))
    return found


def _clean_captions(raw: list[Caption], report: CollectReport) -> list[str]:
    kept = []
    for caption, where in raw:
        text = " ".join(caption.split())
        if text:
            kept.append(text)
        else:
            report.skipped_captions.append((where, EMPTY_CAPTION))
    return kept


def _read_sidecar(image: Path, report: CollectReport) -> list[Caption]:
    """The sidecar's captions; one that cannot be read, is not UTF-8 or has no caption at
    all is reported as a skipped file (its image is still indexed, without captions)."""
    for candidate in (image.with_suffix(".txt"), image.with_name(image.name + ".txt")):
        try:
            if not candidate.is_file():
                continue
        except OSError:  # e.g. a name too long for the file system: no such sidecar
            continue
        try:
            lines = read_text(candidate).splitlines()
        except NotUtf8Error as exc:
            report.skip_file(candidate, f"not UTF-8 text (line {exc.line}, byte "
                                        f"0x{exc.byte:02x}): its captions were left out; "
                                        "save it as UTF-8")
            return []
        except OSError as exc:
            report.skip_file(candidate, f"cannot read: {exc.strerror}")
            return []
        if not any(line.strip() for line in lines):
            report.skip_file(candidate, "caption file with no captions (empty or blank lines)")
            return []
        where = os.path.abspath(candidate)
        return [(line, f"{where}:{number}") for number, line in enumerate(lines, 1)]
    return []


def _is_sidecar(path: Path) -> bool:
    if path.suffix.lower() != ".txt":
        return False
    if is_image_path(Path(path.stem)):  # dog.jpg.txt
        return True
    return any(path.with_suffix(ext).exists() for ext in IMAGE_EXTENSIONS)


def _record(record: object, where: str) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise BadInputError(f"{where}: expected an object with 'image' and 'caption'")
    image = record.get("image") or record.get("image_path") or record.get("filename")
    caption = record.get("caption", record.get("text"))
    if not isinstance(image, str) or not isinstance(caption, str):
        raise BadInputError(f"{where}: expected string fields 'image' and 'caption', "
                            f"got keys {sorted(record)}")
    return image, caption


def _json_captions(path: Path, shown: str) -> dict[str, list[Caption]]:
    data = read_json(path, "caption file")
    captions: dict[str, list[Caption]] = {}
    if isinstance(data, dict):
        for image, caps in data.items():
            caps = [caps] if isinstance(caps, str) else caps
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise BadInputError(f"{shown}: {image!r}: expected a caption or a list of "
                                    "captions (strings)")
            captions.setdefault(image, []).extend(
                (caption, f"{shown}: {image!r}[{k}]") for k, caption in enumerate(caps))
        return captions
    for number, record in enumerate(json_list(data, path)):
        image, caption = _record(record, f"{shown}: entry {number}")
        captions.setdefault(image, []).append((caption, f"{shown}: entry {number}"))
    return captions


def _text_captions(path: Path, shown: str) -> dict[str, list[Caption]]:
    captions: dict[str, list[Caption]] = {}
    for number, line in enumerate(read_text(path, "caption file").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" in line:
            image, caption = line.split("\t", 1)
        else:
            key, _, caption = line.partition(" ")
            match = _FLICKR_KEY.match(key)
            if not match:
                raise BadInputError(f"{shown}:{number}: expected 'IMAGE<TAB>caption' or "
                                    f"'IMAGE#K caption', got {line[:60]!r}")
            image = match["image"]
        captions.setdefault(image.strip(), []).append((caption, f"{shown}:{number}"))
    return captions


def _caption_records(path: Path) -> dict[str, list[Caption]]:
    """IMAGE key -> (caption, FILE:LINE), in file order. Malformed lines name file and line;
    a file that is not UTF-8 is an error naming the line (the captions are the point of
    --captions: better stopped than garbled)."""
    path = Path(os.path.abspath(require_file(Path(path), "caption file")))  # as in reports
    shown = str(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json_captions(path, shown)
    if suffix != ".jsonl":
        return _text_captions(path, shown)
    captions: dict[str, list[Caption]] = {}
    for number, record in iter_jsonl(path):
        image, caption = _record(record, f"{shown}:{number}")
        captions.setdefault(image.strip(), []).append((caption, f"{shown}:{number}"))
    return captions


def read_caption_file(path: Path) -> dict[str, list[str]]:
    """IMAGE key -> captions, in file order. Malformed lines name file and line."""
    return {key: [caption for caption, _ in caps]
            for key, caps in _caption_records(Path(path)).items()}


def _unmatched(extra: dict[str, list[Caption]], used: set[str], report: CollectReport) -> None:
    for key, caps in extra.items():
        if key not in used:
            report.skipped_captions.extend(
                (where, f"no image '{key}' among the inputs") for _, where in caps)


def _regular_file_problem(path: Path) -> str | None:
    """Why `path` (links followed) is not a file to read, or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:  # a dangling link, a link to itself (ELOOP), a name too long
        return f"cannot read: {exc.strerror}"
    return None if stat.S_ISREG(mode) else f"{file_kind(mode)}, not a regular file"


def _collect_file(path: Path, root: Path, extra: dict[str, list[Caption]], used: set[str],
                  seen: dict[str, Path], report: CollectReport) -> None:
    """One walked file: an image with its captions into `report.items`, or a reported skip
    (a sidecar is read with its image, anything else skipped)."""
    if not is_image_path(path):
        if not _is_sidecar(path):
            report.skip_file(path, "not an image file")
        return
    problem = _regular_file_problem(path)
    if problem:
        report.skip_file(path, problem)
        return
    item_id = path.relative_to(root).as_posix() if root.is_dir() else path.name
    try:
        item_id.encode("utf-8")
    except UnicodeEncodeError:
        report.skip_file(path, "the file name is not UTF-8 (the index keeps names as UTF-8 "
                               "text): rename the file")
        return
    try:  # the rule `crossmodal remove` and the API look ids up by
        item_id = file_item_id(item_id)
    except BadInputError as exc:
        report.skip_file(path, str(exc))
        return
    if item_id in seen and seen[item_id] != path.resolve():
        report.skip_file(path, f"duplicate id '{item_id}' (also {seen[item_id]})")
        return
    seen[item_id] = path.resolve()
    raw_caps = _read_sidecar(path, report)
    for key in dict.fromkeys((item_id, path.name, path.stem)):
        if key in extra:
            used.add(key)
            raw_caps.extend(extra[key])
    caps = _clean_captions(raw_caps, report)
    report.items.append(ItemSource(item_id, path.resolve(), caps))


def collect_items(inputs: list[str | Path], caption_files: list[str | Path] = ()) -> CollectReport:
    """Images under the inputs (ids relative to each folder given), with their captions."""
    report = CollectReport()
    extra: dict[str, list[Caption]] = {}
    for caption_file in caption_files:
        for key, caps in _caption_records(Path(caption_file)).items():
            extra.setdefault(key, []).extend(caps)
    used: set[str] = set()
    seen: dict[str, Path] = {}
    for raw in inputs:
        root = Path(raw).expanduser()
        if not root.exists():
            raise BadInputError(f"path not found: {raw}")
        paths = _walk_images(root, report) if root.is_dir() else [root]
        for path in paths:
            try:
                _collect_file(path, root, extra, used, seen, report)
            except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (resolve)
                report.skip_file(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")
    _unmatched(extra, used, report)
    return report
