"""The retrieval metrics of heads on the cached backbone features of a dataset split."""

from __future__ import annotations

import numpy as np
import torch

from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.models.towers.heads import TowerHeads, embed_images, embed_texts
from crossmodal.train.features import FeatureSet


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
