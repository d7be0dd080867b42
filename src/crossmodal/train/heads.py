"""Cached backbone features of a dataset split, and the retrieval metrics of heads on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.models.preprocess import l2_normalize
from crossmodal.models.towers.heads import TowerHeads


@dataclass
class FeatureSet:
    image: np.ndarray  # (n_images, d_img)
    text: np.ndarray  # (n_texts, d_txt)
    text_image: np.ndarray  # (n_texts,) image row of each text


def evaluate_heads(heads: TowerHeads, data: FeatureSet) -> dict:
    heads.eval()
    with torch.inference_mode():
        image = l2_normalize(heads.image(torch.from_numpy(data.image)))
        text = l2_normalize(heads.text(torch.from_numpy(data.text)))
    return evaluate_pairs(image, text, data.text_image)
