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


def evaluate_features(heads, image: torch.Tensor, text: torch.Tensor, data: FeatureSet) -> dict:
    """Retrieval metrics of the heads on backbone features of all of `data`'s images
    (per view with tta) and texts; the caller puts the heads in eval mode."""
    with torch.inference_mode():
        captions = data.captions(np.arange(len(data.text)), heads)
        image_emb = embed_images(heads, image).numpy()
        text_emb = embed_texts(heads, text, captions).numpy()
    return evaluate_pairs(image_emb, text_emb, data.text_image)


def evaluate_heads(heads: TowerHeads, data: FeatureSet) -> dict:
    heads.eval()
    return evaluate_features(heads, torch.from_numpy(data.image), torch.from_numpy(data.text),
                             data)
