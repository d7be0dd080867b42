"""The manifest names everything about an index; it is written last, so it is the commit."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crossmodal.errors import IndexCorruptError
from crossmodal.index import wal
from crossmodal.paths import file_sha256
from crossmodal.storage import atomic_save_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: a write-ahead log beside the generation
READABLE_FORMATS = (1, 2)


def library_versions() -> dict[str, str]:
    import faiss
    import numpy

    from crossmodal.version import __version__

    try:  # from the package metadata: importing torch costs seconds, a commit should not
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {
        "crossmodal": __version__,
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
        "torch": torch_version,
        "python": platform.python_version(),
    }


@dataclass
class Manifest:
    model: str
    model_fingerprint: str
    dim: int
    preprocessing: dict
    index_type: str = "flat"
    index_params: dict = field(default_factory=dict)
    generation: int = 0
    counts: dict = field(default_factory=lambda: {"items": 0, "images": 0, "texts": 0})
    files: dict = field(default_factory=dict)  # role -> {"name": ..., "sha256": ..., "bytes": ...}
    # where the vectors live: {"backend": "faiss"} or {"backend": "milvus", "uri", "collection"}
    store: dict = field(default_factory=lambda: {"backend": "faiss"})
    versions: dict = field(default_factory=dict)
    log: str = ""  # the generation's write-ahead log (crossmodal.index.wal); "" for none
    format: int = FORMAT_VERSION

    def save(self, folder: Path) -> None:
        atomic_save_json(Path(folder) / MANIFEST, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"unreadable manifest {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise IndexCorruptError(f"unreadable manifest {path}: not a JSON object")
        if data.get("format") not in READABLE_FORMATS:
            raise IndexCorruptError(
                f"{path} has format {data.get('format')}, this version reads "
                f"{', '.join(map(str, READABLE_FORMATS))}: upgrade crossmodal to open it"
            )
        known = set(cls.__dataclass_fields__)
        try:
            manifest = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:  # a required field is missing
            raise IndexCorruptError(f"unreadable manifest {path}: {exc}") from exc
        manifest.format = FORMAT_VERSION  # written back as 2; a format-1 folder has no log
        return manifest

    def verify(self, folder: Path) -> list[str]:
        """Files whose size or checksum differ from the manifest, and "log" if a whole record
        of the log fails its checksum (a torn last record is not damage); empty: consistent."""
        bad = []
        for role, entry in self.files.items():
            path = Path(folder) / entry["name"]
            if (not path.is_file() or path.stat().st_size != entry["bytes"]
                    or file_sha256(path) != entry["sha256"]):
                bad.append(role)
        if self.log and wal.problems(Path(folder) / self.log):
            bad.append("log")
        return bad


def read_items(folder: Path, manifest: Manifest) -> tuple[list[dict], list[tuple[str, int]]]:
    """The items and caption rows of the manifest's generation; a file that is not the JSON
    the engine writes is an IndexCorruptError naming it (FileNotFoundError passes through:
    a writer may have replaced the generation, and the reader tries again)."""
    path = Path(folder) / manifest.files["items"]["name"]
    try:
        meta = loads_yielding(path.read_text(encoding="utf-8"))
        text_rows = [tuple(row) for row in meta["texts"]]
        if not isinstance(meta["items"], list):
            raise TypeError("'items' is not a list")
    except (ValueError, KeyError, TypeError) as exc:  # bad JSON or UTF-8, or the wrong shape
        raise IndexCorruptError(
            f"{path} is corrupt ({type(exc).__name__}: {exc}): see `crossmodal info {folder} "
            "--verify`; restore the folder from a backup or rebuild the index") from exc
    return meta["items"], text_rows


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def loads_yielding(text: str) -> object:
    """json.loads, but a top-level object's arrays are parsed an element at a time: one
    json.loads of the items file holds the GIL for its whole parse (1.5 s at 200k items), and
    a server loading a new generation beside the one it serves would stop every search for
    that long. About 1.2x the time of json.loads; the same result."""
    try:
        at = _SPACE.match(text, 0).end()
        if text[at] != "{":
            return json.loads(text)
        out, at = {}, _SPACE.match(text, at + 1).end()
        while text[at] != "}":
            key, at = _DECODER.raw_decode(text, at)
            at = _SPACE.match(text, at).end()
            if not isinstance(key, str) or text[at] != ":":
                raise ValueError(f"expected a name and ':' at character {at}")
            at = _SPACE.match(text, at + 1).end()
            out[key], at = (_array(text, at) if text[at] == "["
                            else _DECODER.raw_decode(text, at))
            at = _after_value(text, at, "}")
        if _SPACE.match(text, at + 1).end() != len(text):
            raise ValueError(f"extra data after character {at}")
        return out
    except IndexError:
        raise ValueError("the JSON text ends too early") from None


def _array(text: str, at: int) -> tuple[list, int]:
    values, at = [], _SPACE.match(text, at + 1).end()
    while text[at] != "]":
        value, at = _DECODER.raw_decode(text, at)
        values.append(value)
        at = _after_value(text, at, "]")
    return values, at + 1


def _after_value(text: str, at: int, closer: str) -> int:
    """Past the ',' after a value (the next one must follow), or at the closer."""
    at = _SPACE.match(text, at).end()
    if text[at] == closer:
        return at
    if text[at] != ",":
        raise ValueError(f"expected ',' or '{closer}' at character {at}")
    at = _SPACE.match(text, at + 1).end()
    if text[at] == closer:
        raise ValueError(f"a ',' before '{closer}' at character {at}")
    return at
