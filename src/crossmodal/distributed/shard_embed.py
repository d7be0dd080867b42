"""Embed one shard and write it in the clip-retrieval layout (what a worker runs; no Ray here)."""

from __future__ import annotations

import numpy as np

from crossmodal.data.loader import iter_image_batches
from crossmodal.distributed.clip_layout import EXTRA_COLUMNS, shard_files, write_shard
from crossmodal.distributed.inputs import ShardSpec, read_tar_samples
from crossmodal.models.protocol import Encoder


def embed_shard(spec: ShardSpec, encoder: Encoder, batch_size: int = 32
                ) -> tuple[np.ndarray, np.ndarray, list[dict], list[tuple[str, str]]]:
    """(image rows, text rows, metadata rows, skipped): one row per image-caption pair."""
    if spec.tar:
        items, skipped = read_tar_samples(spec.tar)
    else:
        items, skipped = spec.items, []
    image_rows, text_rows, metadata = [], [], []
    sources = [item.get("image") or item["path"] for item in items]  # tar bytes or a path
    # The next batch decodes while this one encodes.
    for positions, images, failures in iter_image_batches(
            sources, batch_size, target_size=encoder.preprocessing.size):
        skipped.extend((items[p]["path"], why) for p, why in failures)
        if not images:
            continue
        kept = [items[p] for p in positions]
        vectors = encoder.encode_images(images)
        captions = [c for item in kept for c in item["captions"]]
        caption_vectors = iter(encoder.encode_texts(captions) if captions else [])
        for item, vector in zip(kept, vectors, strict=True):
            extra = {key: item[key] for key in EXTRA_COLUMNS if key in item}
            for caption in item["captions"] or [None]:
                image_rows.append(vector)
                text_rows.append(next(caption_vectors) if caption is not None
                                 else np.zeros(encoder.dim, np.float32))
                metadata.append({"image_path": item["path"], "caption": caption,
                                 "item_id": item["id"], **extra})
    empty = np.zeros((0, encoder.dim), np.float32)
    return (np.stack(image_rows) if image_rows else empty,
            np.stack(text_rows) if text_rows else empty, metadata, skipped)


def embed_and_write(spec: ShardSpec, shard_count: int, out: str, encoder: Encoder,
                    batch_size: int = 32) -> dict:
    """Embed a shard unless it is already done; returns what was done, for the driver."""
    files = shard_files(out, spec.index, shard_count)
    if files.done():
        return {"shard": spec.index, "computed": False, "rows": -1, "skipped": 0}
    image_rows, text_rows, metadata, skipped = embed_shard(spec, encoder, batch_size)
    info = {"model": encoder.model_id, "fingerprint": encoder.fingerprint, "dim": encoder.dim,
            "rows": len(metadata), "skipped": [{"input": w, "reason": r} for w, r in skipped]}
    write_shard(files, image_rows, text_rows, metadata, info)
    return {"shard": spec.index, "computed": True, "rows": len(metadata),
            "skipped": len(skipped)}
