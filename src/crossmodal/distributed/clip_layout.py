"""clip-retrieval's embedding folder layout, written shard by shard and read back.

    img_emb/img_emb_{i}.npy         float16, one row per image-caption pair
    text_emb/text_emb_{i}.npy       float16, row-aligned with img_emb
    metadata/metadata_{i}.parquet   image_path, caption (+ url, item_id, ... extra columns)
    crossmodal/shard_{i}.json       ours: model, fingerprint, dim, skipped inputs

`{i}` is zero-padded to int(log10(shards)) + 1 digits, as clip-retrieval pads it, so their
tools and autofaiss read our folders (and we read theirs). An image with several captions
gives several rows (its image vector repeated); one without captions gives one row whose
caption is null and whose text vector is zero.

Each file is written to a temp name and renamed; metadata is written last. A shard is done
iff its img_emb, text_emb and metadata files all exist: that is the resume rule.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.errors import BadInputError, missing_dependency
from crossmodal.storage import atomic_file, atomic_save_json, atomic_save_npy

FOLDERS = ("img_emb", "text_emb", "metadata")
INFO_FOLDER = "crossmodal"
RUN_FILE = "crossmodal_run.json"
# Item fields written as metadata columns beside image_path / caption / item_id, and read back
# by the importer (the image bytes of tar samples are not).
EXTRA_COLUMNS = ("url", "bytes", "mtime_ns")
_SHARD_NAME = re.compile(r"^metadata_(\d+)\.parquet$")


def shard_width(shard_count: int) -> int:
    return int(math.log10(max(shard_count, 1))) + 1


@dataclass(frozen=True)
class ShardFiles:
    img_emb: Path
    text_emb: Path
    metadata: Path
    info: Path

    def done(self) -> bool:
        return self.img_emb.is_file() and self.text_emb.is_file() and self.metadata.is_file()

    def remove(self) -> None:
        for path in (self.metadata, self.img_emb, self.text_emb, self.info):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def shard_files(folder: str | Path, index: int, shard_count: int) -> ShardFiles:
    folder = Path(folder)
    tag = str(index).zfill(shard_width(shard_count))
    return ShardFiles(folder / "img_emb" / f"img_emb_{tag}.npy",
                      folder / "text_emb" / f"text_emb_{tag}.npy",
                      folder / "metadata" / f"metadata_{tag}.parquet",
                      folder / INFO_FOLDER / f"shard_{tag}.json")


def remove_stale_temps(folder: str | Path) -> None:
    """Temp files of writes a crash interrupted (complete files are never temps)."""
    for sub in (*FOLDERS, INFO_FOLDER):
        path = Path(folder) / sub
        if path.is_dir():
            for entry in os.listdir(path):
                if entry.startswith(".") and entry.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path / entry)


def write_shard(files: ShardFiles, image_vectors: np.ndarray, text_vectors: np.ndarray,
                metadata: list[dict], info: dict) -> None:
    """Write one shard; the metadata file, written last, makes it count as done."""
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas needs it for parquet)
    except ImportError:
        raise missing_dependency("pyarrow", "ray") from None
    if not len(image_vectors) == len(text_vectors) == len(metadata):
        raise ValueError("image vectors, text vectors and metadata must be row-aligned")
    atomic_save_npy(files.img_emb, np.asarray(image_vectors, np.float16))
    atomic_save_npy(files.text_emb, np.asarray(text_vectors, np.float16))
    atomic_save_json(files.info, info)
    frame = pd.DataFrame(metadata, columns=_columns(metadata))
    with atomic_file(files.metadata) as handle:
        frame.to_parquet(handle, index=False)


def _columns(metadata: list[dict]) -> list[str]:
    columns = ["image_path", "caption"]
    for row in metadata:
        columns.extend(key for key in row if key not in columns)
    return columns


@dataclass
class LayoutShard:
    tag: str
    image_vectors: np.ndarray  # float32
    text_vectors: np.ndarray | None  # float32, or None where the folder has no text_emb
    metadata: list[dict]
    info: dict | None


def list_shards(folder: str | Path) -> list[str]:
    """Shard tags in the folder, in numeric order."""
    metadata = Path(folder) / "metadata"
    if not metadata.is_dir():
        raise BadInputError(f"{folder} is not a clip-retrieval embeddings folder "
                            "(no metadata/ folder with metadata_*.parquet)")
    tags = [m.group(1) for name in os.listdir(metadata) if (m := _SHARD_NAME.match(name))]
    return sorted(tags, key=int)


def read_shard(folder: str | Path, tag: str) -> LayoutShard:
    try:
        import pandas as pd
    except ImportError:
        raise missing_dependency("pandas", "ray") from None
    folder = Path(folder)
    img = folder / "img_emb" / f"img_emb_{tag}.npy"
    text = folder / "text_emb" / f"text_emb_{tag}.npy"
    if not img.is_file():
        raise BadInputError(f"{folder}: metadata_{tag}.parquet has no {img.relative_to(folder)}")
    frame = pd.read_parquet(folder / "metadata" / f"metadata_{tag}.parquet")
    frame = frame.astype(object).where(frame.notna(), None)
    image_vectors = np.load(img).astype(np.float32)
    text_vectors = np.load(text).astype(np.float32) if text.is_file() else None
    for name, vectors in (("img_emb", image_vectors), ("text_emb", text_vectors)):
        if vectors is not None and len(vectors) != len(frame):
            raise BadInputError(f"{folder}: {name}_{tag}.npy has {len(vectors)} rows but "
                                f"metadata_{tag}.parquet has {len(frame)}")
    info_path = folder / INFO_FOLDER / f"shard_{tag}.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    return LayoutShard(tag, image_vectors, text_vectors, frame.to_dict("records"), info)
