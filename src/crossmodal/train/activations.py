"""Backbone activations at the input of the first block that trains, cached on disk.

Blocks below the cut do not change while the top blocks train, so their output is computed
once per (backbone weights below the cut, cut, dataset) and training runs at the speed of the
trainable part. Images give (n, C, H, W) float16 maps (pixels when everything trains); texts
give ragged token states (float16; token ids when everything trains) with offsets, so a
batch pads only to its own longest caption.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.loader import encode_image_sources
from crossmodal.models.batching import TEXT_MICRO_BATCH, length_sorted_batches, micro_batches
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.towers.encoder import view_of
from crossmodal.paths import content_key
from crossmodal.storage import atomic_save_npy
from crossmodal.train.features import load_image_rows, save_image_rows


def weights_digest(blocks: list[nn.Module]) -> str:
    """Content hash of the blocks' parameters and buffers: a cache key that changes when a
    block below the cut was trained in an earlier stage."""
    digest = hashlib.sha256()
    for block in blocks:
        for name, tensor in block.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _key(kind: str, spec: dict, cut: int, digest: str, items: list[str]) -> str:
    return content_key({"kind": kind, "spec": spec, "cut": cut, "weights": digest,
                        "items": items})


def image_activations(encoder, data: RetrievalDataset, cut: int, cache: Path,
                      progress: bool = True, view: str = "plain"
                      ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Output of image blocks[:cut] per image (or per mirror image, view "mirror") as float16
    (n, C, H, W); unreadable images give zero rows and are returned as (row, reason)."""
    backbone = encoder.image_backbone
    prep = encoder.preprocessing
    spec = {"backbone": encoder.config.image, "prep": prep.as_dict()}
    if view != "plain":  # plain keeps its old key: caches made before views stay valid
        spec["view"] = view
    digest = weights_digest(backbone.blocks()[:cut])
    path = Path(cache) / f"act-img-{_key('image', spec, cut, digest, data.image_keys())}.npy"
    cached = load_image_rows(path, mmap=True)
    if cached is not None:
        return cached
    with torch.inference_mode():
        probe = backbone.run_blocks(torch.zeros(1, 3, prep.size, prep.size), 0, cut)
    shape = tuple(probe.shape[1:])

    @torch.inference_mode()
    def run(images) -> np.ndarray:
        parts = []
        for batch in micro_batches(images):
            pixels = view_of(images_to_tensor(batch, prep), view)
            parts.append(backbone.run_blocks(pixels, 0, cut).reshape(len(pixels), -1))
        return torch.cat(parts).numpy()

    flat, failed = encode_image_sources(data.images, run, 32, prep.size,
                                       dim=int(np.prod(shape)),
                                       desc=f"image blocks[:{cut}] {view}")
    save_image_rows(path, flat.astype(np.float16).reshape(len(flat), *shape), failed)
    return load_image_rows(path, mmap=True)


@dataclass
class TokenStates:
    """Ragged per-text arrays: text i is values[offsets[i]:offsets[i + 1]]."""

    values: np.ndarray  # (total_tokens, hidden) float16, or (total_tokens,) int64 token ids
    offsets: np.ndarray  # (n + 1,) int64

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows padded to the longest of them, and the (batch, length) attention mask."""
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        longest = int(lengths.max())
        shape = (len(rows), longest, *self.values.shape[1:])
        padded = np.zeros(shape, np.int64 if self.values.ndim == 1 else np.float32)
        mask = np.zeros((len(rows), longest), np.int64)
        for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            start = self.offsets[row]
            padded[i, :length] = self.values[start : start + length]
            mask[i, :length] = 1
        return torch.from_numpy(padded), torch.from_numpy(mask)


def text_activations(encoder, texts: list[str], cut: int, cache: Path,
                     progress: bool = True, batch: int = TEXT_MICRO_BATCH) -> TokenStates:
    """Output of text blocks[:cut] per caption (token ids when cut is 0)."""
    backbone = encoder.text_backbone
    digest = weights_digest(backbone.blocks()[:cut])
    key = _key("text", encoder.config.text, cut, digest, texts)
    values_path = Path(cache) / f"act-txt-{key}.npy"
    offsets_path = Path(cache) / f"act-txt-{key}.offsets.npy"
    if values_path.is_file() and offsets_path.is_file():
        return TokenStates(np.load(values_path, mmap_mode="r"), np.load(offsets_path))
    per_text: list[np.ndarray | None] = [None] * len(texts)
    with torch.inference_mode():
        for rows in tqdm(list(length_sorted_batches(texts, batch)), desc=f"text blocks[:{cut}]",
                         disable=not progress):
            tokens = backbone.tokenize([texts[i] for i in rows])
            ids, mask = tokens["input_ids"], tokens["attention_mask"]
            states = ids if cut == 0 else backbone.run_blocks(ids, mask, 0, cut).half()
            for i, row in enumerate(rows):
                per_text[row] = states[i, : int(mask[i].sum())].numpy()
    lengths = np.array([len(states) for states in per_text], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    atomic_save_npy(values_path, np.concatenate(per_text))
    atomic_save_npy(offsets_path, offsets)  # written last: both present means complete
    return TokenStates(np.load(values_path, mmap_mode="r"), offsets)
