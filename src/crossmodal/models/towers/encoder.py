"""TowersEncoder: backbones + heads behind the Encoder protocol."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from crossmodal.models.batching import map_length_sorted, micro_batches
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.speed import traced_for_inference
from crossmodal.models.towers.backbones import (
    build_image_backbone,
    build_text_backbone,
    load_backbone_weights,
)
from crossmodal.models.towers.config import ImageSpec, TextSpec, TowersConfig
from crossmodal.models.towers.heads import TowerHeads, embed_images, embed_texts
from crossmodal.models.towers.identity import (  # noqa: F401 - their old home
    TTA_VIEWS,
    fingerprint_of,
    image_views_of,
    preprocessing_of,
)
from crossmodal.models.towers.recent_batches import RecentBatches
from crossmodal.paths import file_sha256

# Text features of the frozen text models that inference encoders share (see text_features).
_SHARED_TEXT_FEATURES: RecentBatches[torch.Tensor] = RecentBatches(torch.clone)


def view_of(pixels: torch.Tensor, view: str) -> torch.Tensor:
    """A view of preprocessed (n, 3, H, W) pixels; "mirror" flips them left to right."""
    return pixels.flip(3) if view == "mirror" else pixels


class TowersEncoder:
    """The PyTorch runtime of a tower: training, heat maps, and the fallback where ONNX
    Runtime cannot run (crossmodal.models.towers.onnx_towers runs inference by default)."""

    def __init__(self, config: TowersConfig, model_id: str | None = None, load_heads: bool = True):
        self.config = config
        self.model_id = model_id or f"towers:{config.name}"
        self.languages = tuple(config.languages)  # the text side's (empty: any)
        img = ImageSpec.of(config.image)
        self.preprocessing = preprocessing_of(config)
        self.image_views = image_views_of(config)
        self.image_backbone = build_image_backbone(img).eval()
        self.image_backbone.to(memory_format=torch.channels_last)
        self._traced_image_backbone = None  # built on first use; training uses the eager one
        self.text_backbone = build_text_backbone(TextSpec.of(config.text)).eval()
        self.context_length = int(getattr(self.text_backbone, "max_length", 512))
        self.heads = TowerHeads(
            self.image_backbone.out_dim, self.text_backbone.out_dim, config.head
        ).eval()
        self.dim = self.heads.dim
        # Set by an inference runtime (TowersOnnxEncoder) for a pretrained, frozen text model:
        # towers with equal keys read each other's recent text features. Never set in
        # training, where the text model's weights may change between two calls.
        self.shared_text_key: str | None = None
        self._weights_digest = "untrained"
        if load_heads and config.weights_path is not None:
            self.heads.load(config.weights_path)
            self._weights_digest = file_sha256(config.weights_path)
        self.backbone_digest = "pretrained"
        if config.backbone_weights_path is not None:
            path = config.backbone_weights_path
            load_backbone_weights(self.image_backbone, self.text_backbone, path)
            self.backbone_digest = file_sha256(path)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.config, self._weights_digest, self.backbone_digest)

    # Backbone features are separate from heads so training can cache them.
    @torch.inference_mode()
    def image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(n, d) pooled features; (n, views, d) when the tower averages views (tta)."""
        parts = []
        for batch in micro_batches(images):
            pixels = images_to_tensor(batch, self.preprocessing)
            if self._traced_image_backbone is None:
                self._traced_image_backbone = traced_for_inference(self.image_backbone, pixels)
            views = [self._traced_image_backbone(view_of(pixels, v)) for v in self.image_views]
            parts.append(views[0] if len(views) == 1 else torch.stack(views, 1))
        if parts:
            return torch.cat(parts)
        width, views = self.image_backbone.out_dim, len(self.image_views)
        return torch.empty(0, width) if views == 1 else torch.empty(0, views, width)

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        if not len(texts):
            return torch.empty(0, self.text_backbone.out_dim)
        if self.shared_text_key is None:
            return map_length_sorted(texts, self.text_backbone)
        return _SHARED_TEXT_FEATURES.get((self.shared_text_key, tuple(texts)),
                                         lambda: map_length_sorted(texts, self.text_backbone))

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        return embed_images(self.heads, self.image_features(images)).numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return embed_texts(self.heads, self.text_features(list(texts)), list(texts)).numpy()

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return self.text_backbone.text_lengths(list(texts))

    @torch.inference_mode()
    def image_feature_map(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Per-cell embeddings (N, H, W, dim), for where-it-looks heat maps."""
        pixels = images_to_tensor(images, self.preprocessing)
        fmap = self.image_backbone.feature_map(pixels).permute(0, 2, 3, 1)
        return torch.nn.functional.normalize(self.heads.image(fmap), dim=-1)
