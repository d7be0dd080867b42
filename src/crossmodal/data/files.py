"""Turn folders, image files and caption files into items to index.

Captions come from a sidecar text file beside each image (`dog.jpg` -> `dog.txt` or
`dog.jpg.txt`, one caption a line) or from caption files given with --captions:
  * `.txt`/`.tsv`: `IMAGE<TAB>caption` or Flickr style `IMAGE#K caption` / `IMAGE#enc#K caption`
  * `.jsonl`: one `{"image": ..., "caption": ...}` a line (`image_path`/`text` also accepted)
  * `.json`: a list of such objects, or `{IMAGE: [captions]}`
IMAGE matches an image by relative path, file name, or file name without extension.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.data.images import IMAGE_EXTENSIONS, is_image_path
from crossmodal.data.parsing import iter_jsonl, read_json, require_file
from crossmodal.errors import BadInputError

_FLICKR_KEY = re.compile(r"^(?P<image>[^\s#]+)#(?:[a-z]+#)?\d+$")


@dataclass
class ItemSource:
    id: str
    path: Path
    captions: list[str] = field(default_factory=list)


@dataclass
class CollectReport:
    items: list[ItemSource] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    empty_captions: int = 0


def _walk_images(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in sorted(files) if not f.startswith("."))
    return found


def _clean_captions(raw: list[str], where: str, report: CollectReport) -> list[str]:
    kept = []
    for caption in raw:
        text = " ".join(caption.split())
        if text:
            kept.append(text)
        else:
            report.empty_captions += 1
            report.skipped.append((where, "empty caption"))
    return kept


def _read_sidecar(image: Path) -> list[str] | None:
    for candidate in (image.with_suffix(".txt"), image.with_name(image.name + ".txt")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    return None


def _is_sidecar(path: Path) -> bool:
    if path.suffix.lower() != ".txt":
        return False
    if is_image_path(Path(path.stem)):  # dog.jpg.txt
        return True
    return any(path.with_suffix(ext).exists() for ext in IMAGE_EXTENSIONS)


def _record(record: object, path: Path, where: str) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise BadInputError(f"{where}: expected an object with 'image' and 'caption'")
    image = record.get("image") or record.get("image_path") or record.get("filename")
    caption = record.get("caption", record.get("text"))
    if not isinstance(image, str) or not isinstance(caption, str):
        raise BadInputError(f"{where}: expected string fields 'image' and 'caption', "
                            f"got keys {sorted(record)}")
    return image, caption


def read_caption_file(path: Path) -> dict[str, list[str]]:
    """IMAGE key -> captions, in file order. Malformed lines name file and line."""
    path = require_file(Path(path), "caption file")
    captions: dict[str, list[str]] = {}
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = read_json(path, "caption file")
        if isinstance(data, dict):
            for image, caps in data.items():
                captions.setdefault(image, []).extend([caps] if isinstance(caps, str) else caps)
        else:
            for number, record in enumerate(data):
                image, caption = _record(record, path, f"{path}: entry {number}")
                captions.setdefault(image, []).append(caption)
        return captions
    if suffix == ".jsonl":
        for number, record in iter_jsonl(path):
            image, caption = _record(record, path, f"{path}:{number}")
            captions.setdefault(image.strip(), []).append(caption)
        return captions
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" in line:
            image, caption = line.split("\t", 1)
        else:
            key, _, caption = line.partition(" ")
            match = _FLICKR_KEY.match(key)
            if not match:
                raise BadInputError(f"{path}:{number}: expected 'IMAGE<TAB>caption' or "
                                    f"'IMAGE#K caption', got {line[:60]!r}")
            image = match["image"]
        captions.setdefault(image.strip(), []).append(caption)
    return captions


def collect_items(inputs: list[str | Path], caption_files: list[str | Path] = ()) -> CollectReport:
    """Images under the inputs (ids relative to each folder given), with their captions."""
    report = CollectReport()
    extra: dict[str, list[str]] = {}
    for caption_file in caption_files:
        for key, caps in read_caption_file(Path(caption_file)).items():
            extra.setdefault(key, []).extend(caps)
    seen: dict[str, Path] = {}
    for raw in inputs:
        root = Path(raw).expanduser()
        if not root.exists():
            raise BadInputError(f"path not found: {raw}")
        paths = _walk_images(root) if root.is_dir() else [root]
        for path in paths:
            if not is_image_path(path):
                if not _is_sidecar(path):
                    report.skipped.append((str(path), "not an image file"))
                continue
            item_id = path.relative_to(root).as_posix() if root.is_dir() else path.name
            if item_id in seen and seen[item_id] != path.resolve():
                why = f"duplicate id '{item_id}' (also {seen[item_id]})"
                report.skipped.append((str(path), why))
                continue
            seen[item_id] = path.resolve()
            raw_caps = list(_read_sidecar(path) or [])
            for key in dict.fromkeys((item_id, path.name, path.stem)):
                raw_caps.extend(extra.get(key, []))
            caps = _clean_captions(raw_caps, str(path), report)
            report.items.append(ItemSource(item_id, path.resolve(), caps))
    return report
