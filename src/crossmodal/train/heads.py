"""Cached backbone features of a dataset split, and the retrieval metrics of heads on them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.models.towers.heads import TowerHeads, embed_images, embed_texts


@dataclass
class FeatureSet:
    image: np.ndarray  # (n_images, d_img), or (n_images, views, d_img) with tta
    text: np.ndarray  # (n_texts, d_txt)
    text_image: np.ndarray  # (n_texts,) image row of each text
    texts: list[str] = field(default_factory=list)  # the captions, for heads with a gram bag

    def captions(self, rows: np.ndarray, heads) -> list[str] | None:
        """The captions of `rows` when the heads read them (a gram bag), else None."""
        return [self.texts[i] for i in rows] if getattr(heads, "grams", None) else None


def evaluate_heads(heads: TowerHeads, data: FeatureSet) -> dict:
    heads.eval()
    with torch.inference_mode():
        image = embed_images(heads, torch.from_numpy(data.image)).numpy()
        rows = np.arange(len(data.text))
        text = embed_texts(heads, torch.from_numpy(data.text), data.captions(rows, heads)).numpy()
    return evaluate_pairs(image, text, data.text_image)
