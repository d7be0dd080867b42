"""The retrieval metrics of heads on the cached backbone features of a dataset split, by the
image-text evaluator's own scoring (what `crossmodal eval` reports)."""

from __future__ import annotations

import numpy as np
import torch

from crossmodal.evaluation.evaluators import Evaluation, ImageTextEvaluator
from crossmodal.models.towers.heads import TowerHeads, embed_images, embed_texts
from crossmodal.train.features import FeatureSet


def evaluate_features(heads, image: torch.Tensor, text: torch.Tensor, data: FeatureSet,
                      primary_metric: str = "rsum") -> Evaluation:
    """Retrieval metrics of the heads on backbone features of all of `data`'s images
    (per view with tta) and texts; the caller puts the heads in eval mode."""
    device = next(heads.parameters()).device  # the GPU while heads train there
    with torch.inference_mode():
        captions = data.captions(np.arange(len(data.text)), heads)
        image_emb = embed_images(heads, image.to(device)).float().cpu().numpy()
        text_emb = embed_texts(heads, text.to(device), captions).float().cpu().numpy()
    return ImageTextEvaluator.on_embeddings(image_emb, text_emb, data.text_image,
                                            primary_metric)


def evaluate_heads(heads: TowerHeads, data: FeatureSet) -> dict:
    """The report of the heads on all of `data` (what validation sees)."""
    heads.eval()
    return evaluate_features(heads, torch.from_numpy(data.image), torch.from_numpy(data.text),
                             data).report
