"""Split a collection into shard specs that any worker can process on its own.

Three kinds of input, freely mixed:
  * folders and image files (captions from sidecars and --captions files, as `index` reads them)
  * webdataset `.tar` files: one shard per tar; a sample is `KEY.jpg|png|webp` with
    optional `KEY.txt` (caption) and `KEY.json` (its "url" is kept)
  * a `.parquet`, `.csv` or `.tsv` table with an image path column and an optional caption
    column (one row per image-caption pair; relative paths are from the table's folder)

A spec is plain JSON (it travels to Ray workers). The plan's fingerprint covers every spec,
file sizes and modification times included, so a resumed run can tell whether the shards
already on disk were made from the same inputs.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crossmodal.data.files import collect_items
from crossmodal.errors import BadInputError, missing_dependency
from crossmodal.paths import content_key

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
PATH_COLUMNS = ("image_path", "path", "image", "filepath", "file_name", "filename")
CAPTION_COLUMNS = ("caption", "text", "title")
WDS_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class ShardSpec:
    index: int
    items: list[dict] = field(default_factory=list)  # {"id", "path", "captions", ...}
    tar: str | None = None  # a webdataset tar; items are read from it by the worker

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ShardSpec:
        return cls(**data)


@dataclass
class ShardPlan:
    shards: list[ShardSpec]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # inputs: (path, why)
    skipped_captions: list[tuple[str, str]] = field(default_factory=list)  # (FILE:LINE, why)

    @property
    def fingerprint(self) -> str:
        return content_key([s.to_dict() for s in self.shards])


def _file_item(item_id: str, path: Path, captions: list[str], **extra) -> dict:
    try:
        stat = path.stat()
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:  # reported as skipped by the worker that cannot read it
        size, mtime = -1, -1
    return {"id": item_id, "path": str(path), "captions": captions, "bytes": size,
            "mtime_ns": mtime, **extra}


def _first_column(columns: list[str], wanted: tuple[str, ...], given: str | None) -> str | None:
    if given:
        return given if given in columns else None
    return next((c for c in wanted if c in columns), None)


def read_table_items(path: Path, path_column: str | None = None,
                     caption_column: str | None = None) -> list[dict]:
    """Items of a parquet/CSV/TSV table: rows with the same image become one item."""
    try:
        import pandas as pd
    except ImportError:
        raise missing_dependency("pandas", "ray") from None
    if path.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise missing_dependency("pyarrow", "ray") from None
    else:
        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                            dtype=str, keep_default_na=False)
    columns = list(frame.columns)
    image_col = _first_column(columns, PATH_COLUMNS, path_column)
    if image_col is None:
        raise BadInputError(f"{path}: no image path column (looked for "
                            f"{path_column or ', '.join(PATH_COLUMNS)}; it has {columns})")
    caption_col = _first_column(columns, CAPTION_COLUMNS, caption_column)
    if caption_column and caption_col is None:
        raise BadInputError(f"{path}: no column '{caption_column}' (it has {columns})")
    items: dict[str, dict] = {}
    for row in frame.to_dict("records"):
        key = str(row[image_col]).strip()
        if not key:
            continue
        if key not in items:
            image = Path(key) if Path(key).is_absolute() else path.parent / key
            extra = {"url": str(row["url"])} if row.get("url") else {}
            items[key] = _file_item(key, image.resolve(), [], **extra)
        caption = row.get(caption_col) if caption_col else None
        if isinstance(caption, str) and caption.strip():
            items[key]["captions"].append(" ".join(caption.split()))
    return list(items.values())


def plan_shards(inputs: list[str | Path], caption_files: list[str | Path] = (),
                shard_size: int = 1000, path_column: str | None = None,
                caption_column: str | None = None) -> ShardPlan:
    """Shard specs for the inputs: items in chunks of `shard_size`, one shard per tar."""
    if shard_size < 1:
        raise BadInputError("--shard-size must be at least 1")
    tars: list[Path] = []
    tables: list[Path] = []
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            raise BadInputError(f"path not found: {raw}")
        if path.is_file() and path.suffix.lower() == ".tar":
            tars.append(path.resolve())
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            tables.append(path)
        else:
            files.append(path)
    plan = ShardPlan([])
    items: list[dict] = []
    if files:
        collected = collect_items(files, list(caption_files))
        plan.skipped.extend(collected.skipped_files)
        plan.skipped_captions.extend(collected.skipped_captions)
        items.extend(_file_item(s.id, s.path, s.captions) for s in collected.items)
    for table in tables:
        items.extend(read_table_items(table, path_column, caption_column))
    seen: set[str] = set()
    unique = []
    for item in items:
        if item["id"] in seen:
            plan.skipped.append((item["path"], f"duplicate id '{item['id']}'"))
            continue
        seen.add(item["id"])
        unique.append(item)
    for start in range(0, len(unique), shard_size):
        plan.shards.append(ShardSpec(len(plan.shards), unique[start : start + shard_size]))
    for tar in tars:
        stat = tar.stat()
        plan.shards.append(ShardSpec(len(plan.shards), [{"bytes": stat.st_size,
                                                         "mtime_ns": stat.st_mtime_ns}],
                                     tar=str(tar)))
    if not plan.shards:
        raise BadInputError(f"no images found in {', '.join(map(str, inputs))}")
    return plan


def _split_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + ext).lower()


def read_tar_samples(tar_path: str | Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Samples of a webdataset tar as items with the image bytes; (member, why) for skips."""
    samples: dict[str, dict] = {}
    skipped: list[tuple[str, str]] = []
    tar_name = Path(tar_path).name
    try:
        with tarfile.open(tar_path) as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, ext = _split_key(member.name)
                data = archive.extractfile(member).read()
                sample = samples.setdefault(key, {"key": key})
                if ext in WDS_IMAGE_EXTENSIONS:
                    sample["image"] = data
                elif ext == ".txt":
                    sample["caption"] = data.decode("utf-8", errors="replace")
                elif ext == ".json":
                    with contextlib.suppress(ValueError, AttributeError):
                        sample["url"] = json.loads(data).get("url")
    except (tarfile.TarError, OSError) as exc:
        return [], [(str(tar_path), f"cannot read tar: {exc}")]
    items = []
    for key, sample in samples.items():
        if "image" not in sample:
            skipped.append((f"{tar_path}:{key}", "no image in sample"))
            continue
        caption = " ".join((sample.get("caption") or "").split())
        item = {"id": f"{tar_name}/{key}", "path": key, "captions": [caption] if caption else [],
                "image": sample["image"]}
        if sample.get("url"):
            item["url"] = sample["url"]
        items.append(item)
    return items, skipped


def without_items(plan: ShardPlan, item_ids: set[str], shard_size: int = 1000) -> ShardPlan:
    """The plan less the given item ids (already indexed), re-chunked; tars are kept whole."""
    if not item_ids:
        return plan
    items = [item for spec in plan.shards if not spec.tar for item in spec.items
             if item["id"] not in item_ids]
    rest = ShardPlan([], list(plan.skipped), list(plan.skipped_captions))
    for start in range(0, len(items), shard_size):
        rest.shards.append(ShardSpec(len(rest.shards), items[start : start + shard_size]))
    for spec in plan.shards:
        if spec.tar:
            rest.shards.append(ShardSpec(len(rest.shards), spec.items, spec.tar))
    return rest
