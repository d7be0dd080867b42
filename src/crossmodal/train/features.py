"""Backbone features of a dataset, computed once and cached as .npy beside a cache key.

Frozen towers' outputs do not change while heads train, so heads-only training runs at the
speed of the heads alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.loader import iter_image_batches
from crossmodal.index.storage import atomic_save_json, atomic_save_npy


def _key(kind: str, spec: dict, items: list[str]) -> str:
    blob = json.dumps({"kind": kind, "spec": spec, "items": items}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_image_features(encoder, data: RetrievalDataset,
                          cache_dir: Path) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Backbone features per image, and the (row, reason) of unreadable images (zero rows)."""
    spec = {"backbone": encoder.config.image, "prep": encoder.preprocessing.as_dict()}
    path = Path(cache_dir) / f"img-{_key('image', spec, data.image_keys())}.npy"
    failed_path = path.with_suffix(".failed.json")
    if path.is_file() and failed_path.is_file():
        failed = json.loads(failed_path.read_text(encoding="utf-8"))
        return np.load(path), [(int(row), str(why)) for row, why in failed]
    out = np.zeros((len(data.images), encoder.image_backbone.out_dim), np.float32)
    failed: list[tuple[int, str]] = []
    bar = tqdm(total=len(data.images), desc="image features", unit="img")
    for positions, images, failures in iter_image_batches(
        data.images, 32, target_size=encoder.preprocessing.size
    ):
        failed.extend(failures)
        if images:
            out[positions] = encoder.image_features(images).numpy()
        bar.update(len(positions) + len(failures))
    bar.close()
    atomic_save_npy(path, out)
    atomic_save_json(failed_path, failed)  # written last: both present means complete
    return out, failed


def cached_text_features(encoder, data: RetrievalDataset, cache_dir: Path,
                         batch: int = 256) -> np.ndarray:
    path = Path(cache_dir) / f"txt-{_key('text', encoder.config.text, data.texts)}.npy"
    if path.is_file():
        return np.load(path)
    parts = []
    for start in tqdm(range(0, len(data.texts), batch), desc="text features", unit="batch"):
        with torch.inference_mode():
            parts.append(encoder.text_features(data.texts[start : start + batch]).numpy())
    out = np.concatenate(parts).astype(np.float32)
    atomic_save_npy(path, out)
    return out
