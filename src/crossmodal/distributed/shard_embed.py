"""Embed one shard and write it in the clip-retrieval layout (what a worker runs; no Ray here)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from crossmodal.distributed.clip_layout import shard_files, write_shard
from crossmodal.distributed.inputs import ShardSpec, load_item_image, read_tar_samples
from crossmodal.models.protocol import Encoder

# Item fields that become metadata columns (the image bytes of tar samples do not).
_COLUMNS = ("url", "bytes", "mtime_ns")


def embed_shard(spec: ShardSpec, encoder: Encoder, batch_size: int = 32
                ) -> tuple[np.ndarray, np.ndarray, list[dict], list[tuple[str, str]]]:
    """(image rows, text rows, metadata rows, skipped): one row per image-caption pair."""
    if spec.tar:
        items, skipped = read_tar_samples(spec.tar)
    else:
        items, skipped = spec.items, []
    image_rows, text_rows, metadata = [], [], []
    size = encoder.preprocessing.size
    with ThreadPoolExecutor(max_workers=2) as pool:  # PIL decodes outside the GIL
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            decoded = list(pool.map(lambda item: load_item_image(item, size), batch))
            kept = [(item, image) for item, image in zip(batch, decoded, strict=True)
                    if not isinstance(image, str)]
            skipped.extend((item["path"], why) for item, why in zip(batch, decoded, strict=True)
                           if isinstance(why, str))
            if not kept:
                continue
            vectors = encoder.encode_images([image for _, image in kept])
            captions = [c for item, _ in kept for c in item["captions"]]
            caption_vectors = iter(encoder.encode_texts(captions) if captions else [])
            for (item, _), vector in zip(kept, vectors, strict=True):
                extra = {key: item[key] for key in _COLUMNS if key in item}
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
