"""Build (or extend) a crossmodal index from a clip-retrieval embeddings folder, without encoding.

Rows are grouped into items by `item_id` (our folders) or `image_path` (clip-retrieval's):
the first row of an item gives its image vector, every row with a caption adds a caption and
its text vector. Items already in the index are left alone, so an import can be rerun.
The model is recorded in the index so text and image queries are encoded the same way; its
dimension (and, for our folders, its fingerprint) must match the vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossmodal.collection.collection import Collection
from crossmodal.distributed.clip_layout import EXTRA_COLUMNS, RUN_FILE, list_shards, read_shard
from crossmodal.errors import BadInputError, IndexMismatchError
from crossmodal.models.preprocess import l2_normalize

_COMMIT_EVERY = 50_000  # items per add_vectors call: each call rewrites the index files


@dataclass
class ImportReport:
    into: Path
    model: str
    shards: int = 0
    added: int = 0
    texts: int = 0
    already_present: int = 0
    captions_without_vectors: int = 0


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _model_of(folder: Path, into: Path, model: str | None) -> str:
    run_path = folder / RUN_FILE
    recorded = json.loads(run_path.read_text(encoding="utf-8")).get("model") \
        if run_path.is_file() else None
    if model and recorded and model != recorded:
        raise IndexMismatchError(f"{folder} was embedded with '{recorded}', not '{model}'")
    if model or recorded:
        return model or recorded
    if Collection.exists(into):
        return Collection.open(into).manifest.model
    raise BadInputError(f"which model made the vectors in {folder}? give --model "
                        "(e.g. the open_clip or hf id clip-retrieval used)")


def _check_vectors(collection: Collection, shard, folder: Path) -> None:
    dim = collection.manifest.dim
    if shard.image_vectors.ndim != 2 or (len(shard.image_vectors)
                                         and shard.image_vectors.shape[1] != dim):
        raise IndexMismatchError(
            f"{folder}: img_emb_{shard.tag}.npy holds {shard.image_vectors.shape[-1]}-d vectors "
            f"but '{collection.manifest.model}' makes {dim}-d ones: give the model that made them"
        )
    info = shard.info or {}
    if info.get("fingerprint") and info["fingerprint"] != collection.manifest.model_fingerprint:
        raise IndexMismatchError(
            f"{folder}: shard {shard.tag} was embedded by other weights of '{info.get('model')}' "
            f"(fingerprint {info['fingerprint']}, index {collection.manifest.model_fingerprint})"
        )


class _Importer:
    """Rows of shards into items of `collection`, added every _COMMIT_EVERY items."""

    def __init__(self, collection: Collection, report: ImportReport):
        self.collection, self.report = collection, report
        self.items: dict[str, dict] = {}  # read, not yet added
        self.image_rows: list[np.ndarray] = []
        self.text_rows: dict[str, list[np.ndarray]] = {}
        self.seen: set[str] = set()

    def add_row(self, shard, tag: str, row: int, meta: dict) -> None:
        report, items = self.report, self.items
        item_id = str(meta.get("item_id") or meta.get("image_path") or f"{tag}/{row}")
        if item_id in self.collection:
            if item_id not in self.seen:
                report.already_present += 1
                self.seen.add(item_id)
            return
        if item_id not in items and item_id not in self.seen:
            self.seen.add(item_id)
            item = {"id": item_id, "path": str(meta.get("image_path") or item_id),
                    "captions": []}
            item.update({k: _plain(meta[k]) for k in EXTRA_COLUMNS if meta.get(k) is not None})
            items[item_id] = item
            self.image_rows.append(shard.image_vectors[row])
        elif item_id not in items:  # an item of an earlier, already added chunk
            return
        caption = meta.get("caption")
        if isinstance(caption, str) and caption:
            if shard.text_vectors is None:
                report.captions_without_vectors += 1
                return
            items[item_id]["captions"].append(caption)
            self.text_rows.setdefault(item_id, []).append(shard.text_vectors[row])

    def flush(self) -> None:
        items, text_rows, report = self.items, self.text_rows, self.report
        if not items:
            return
        texts = [v for item_id in items for v in text_rows.get(item_id, [])]
        dim = self.collection.manifest.dim
        # another writer may have added some of these since they were checked: skip those
        skipped = set(self.collection.add_vectors(
            list(items.values()), l2_normalize(np.stack(self.image_rows)),
            l2_normalize(np.stack(texts)) if texts else np.zeros((0, dim), np.float32),
            skip_existing=True,
        ))
        report.added += len(items) - len(skipped)
        report.already_present += len(skipped)
        report.texts += sum(len(text_rows.get(item_id, [])) for item_id in items
                            if item_id not in skipped)
        items.clear(), self.image_rows.clear(), text_rows.clear()


def import_embeddings(folder: str | Path, into: str | Path, model: str | None = None,
                      index_type: str = "flat", progress: bool = True,
                      collection: Collection | None = None) -> ImportReport:
    """`collection`: the index at `into` when the caller has it open already."""
    folder, into = Path(folder), Path(into)
    tags = list_shards(folder)
    if collection is None:
        collection = Collection.create(into, model=_model_of(folder, into, model),
                                       index_type=index_type)
    else:
        _model_of(folder, into, collection.manifest.model)  # refuses another model's vectors
    report = ImportReport(into, collection.manifest.model, shards=len(tags))
    importer = _Importer(collection, report)
    for tag in tqdm(tags, desc="importing", unit="shard", disable=not progress):
        shard = read_shard(folder, tag)
        _check_vectors(collection, shard, folder)
        for row, meta in enumerate(shard.metadata):
            importer.add_row(shard, tag, row, meta)
        if len(importer.items) >= _COMMIT_EVERY:
            importer.flush()
    importer.flush()
    return report
