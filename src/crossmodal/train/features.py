"""Backbone features of a dataset, computed once and cached as .npy beside a cache key, and
`FeatureSet`, the features of one split as the trainer reads them.

Frozen towers' outputs do not change while heads train, so heads-only training runs at the
speed of the heads alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.loader import encode_image_sources, encode_text_batches
from crossmodal.models.speed import cpu_has_bf16
from crossmodal.paths import content_key
from crossmodal.storage import atomic_save_json, atomic_save_npy
from crossmodal.train.fast_features import (
    cuda_image_features,
    cuda_text_features,
    onnx_image_features,
    onnx_text_features,
    uses_onnx_text,
)


def _key(kind: str, spec: dict, items: list[str]) -> str:
    # The runtime precision too: text backbones run bf16 where the CPU has it, and a cache
    # made that way must not serve an fp32 run (CROSSMODAL_BF16=0) or the reverse.
    precision = "bf16" if cpu_has_bf16() else "fp32"
    if torch.cuda.is_available():  # fast_features runs the backbones in fp16 there
        precision = "cuda-fp16"
    return content_key({"kind": kind, "spec": spec, "items": items, "precision": precision})


def _fine_tuned(encoder) -> dict:
    """Fine-tuned backbone weights change the features (pretrained keys stay as they were)."""
    digest = getattr(encoder, "backbone_digest", "pretrained")
    return {} if digest == "pretrained" else {"backbone_weights": digest}


def cached_image_features(encoder, data: RetrievalDataset, cache_dir: Path,
                          progress: bool = True) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Backbone features per image (per view with tta), and the (row, reason) of unreadable
    images (zero rows)."""
    spec = {"backbone": encoder.config.image, "prep": encoder.preprocessing.as_dict(),
            **_fine_tuned(encoder)}
    path = Path(cache_dir) / f"img-{_key('image', spec, data.image_keys())}.npy"
    views = len(getattr(encoder, "image_views", ("plain",)))
    cached = load_image_rows(path)
    if cached is None:
        width = encoder.image_backbone.out_dim
        # indexing's runtime (~2x PyTorch on CPU), or the GPU where there is one
        fast = onnx_image_features(encoder) or cuda_image_features(encoder)

        def extract(images):
            out = fast(images) if fast is not None else encoder.image_features(images).numpy()
            return out.reshape(len(images), -1)

        flat, failed = encode_image_sources(data.images, extract, 32, encoder.preprocessing.size,
                                            dim=width * views, desc="image features",
                                            progress=progress)
        save_image_rows(path, flat, failed)
        cached = flat, failed
    rows, failed = cached
    # (n, d), or (n, views, d) for towers that average views of each image (tta)
    return (rows if views == 1 else rows.reshape(len(rows), views, -1)), failed


def load_image_rows(path: Path, mmap: bool = False
                    ) -> tuple[np.ndarray, list[tuple[int, str]]] | None:
    """A cached per-image array and its unreadable rows, or None unless both files exist."""
    failed_path = path.with_suffix(".failed.json")
    if not (path.is_file() and failed_path.is_file()):
        return None
    failed = json.loads(failed_path.read_text(encoding="utf-8"))
    array = np.load(path, mmap_mode="r" if mmap else None)
    return array, [(int(row), str(why)) for row, why in failed]


def save_image_rows(path: Path, array: np.ndarray, failed: list[tuple[int, str]]) -> None:
    atomic_save_npy(path, array)
    atomic_save_json(path.with_suffix(".failed.json"), failed)  # last: both present = complete


def cached_text_features(encoder, data: RetrievalDataset, cache_dir: Path,
                         batch: int = 256, progress: bool = True) -> np.ndarray:
    spec = {**encoder.config.text, **_fine_tuned(encoder)}
    if uses_onnx_text(encoder):  # fp32 ONNX Runtime, not the CPU's bf16 PyTorch
        spec["runtime"] = "onnx"
    path = Path(cache_dir) / f"txt-{_key('text', spec, data.texts)}.npy"
    if path.is_file():
        return np.load(path)
    fast = onnx_text_features(encoder) or cuda_text_features(encoder)
    out = encode_text_batches(data.texts, fast or (lambda texts: encoder.text_features(texts)
                                                   .numpy()),
                              batch, desc="text features", progress=progress)
    atomic_save_npy(path, out)
    return out


@dataclass
class FeatureSet:
    image: np.ndarray  # (n_images, d_img), or (n_images, views, d_img) with tta
    text: np.ndarray  # (n_texts, d_txt)
    text_image: np.ndarray  # (n_texts,) image row of each text
    texts: list[str] = field(default_factory=list)  # the captions, for heads with a gram bag

    def captions(self, rows: np.ndarray, heads) -> list[str] | None:
        """The captions of `rows` when the heads read them (a gram bag), else None."""
        return [self.texts[i] for i in rows] if getattr(heads, "grams", None) else None
