"""TowersEncoder: backbones + heads behind the Encoder protocol."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from crossmodal.errors import UnknownModelError
from crossmodal.models.batching import map_length_sorted, micro_batches
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.protocol import ImagePreprocessing
from crossmodal.models.speed import traced_for_inference
from crossmodal.models.towers.backbones import (
    build_image_backbone,
    build_text_backbone,
    load_backbone_weights,
)
from crossmodal.models.towers.config import ImageSpec, TextSpec, TowersConfig
from crossmodal.models.towers.heads import TowerHeads, embed_images, embed_texts
from crossmodal.paths import file_sha256

# Test-time augmentation: "flip" embeds each image and its mirror image and averages them.
TTA_VIEWS = {"none": ("plain",), "flip": ("plain", "mirror")}


def view_of(pixels: torch.Tensor, view: str) -> torch.Tensor:
    """A view of preprocessed (n, 3, H, W) pixels; "mirror" flips them left to right."""
    return pixels.flip(3) if view == "mirror" else pixels


def preprocessing_of(config: TowersConfig) -> ImagePreprocessing:
    """The image preprocessing a tower config names (defaults: ImageSpec's, one place)."""
    img = ImageSpec.of(config.image)
    return ImagePreprocessing(size=img.size, mean=tuple(img.mean), std=tuple(img.std),
                              resize=img.resize, interpolation=img.interpolation)


def image_views_of(config: TowersConfig) -> tuple[str, ...]:
    tta = ImageSpec.of(config.image).tta
    if tta not in TTA_VIEWS:
        raise UnknownModelError(f"image 'tta' must be one of {sorted(TTA_VIEWS)}, not {tta!r}")
    return TTA_VIEWS[tta]


def _digest_of(path, absent: str, what: str) -> str:
    if path is None:
        return absent
    if not path.is_file():
        raise UnknownModelError(f"{what} not found at {path}: train them with `crossmodal "
                                "train` or fix the tower config that names them")
    return file_sha256(path)


def fingerprint_of(config: TowersConfig, weights_digest: str | None = None,
                   backbone_digest: str | None = None) -> str:
    """What names a tower's vectors (config and weight files), whichever runtime runs it;
    digests not given are read from the config's weight files."""
    if weights_digest is None:
        weights_digest = _digest_of(config.weights_path, "untrained", "tower head weights")
    if backbone_digest is None:
        backbone_digest = _digest_of(config.backbone_weights_path, "pretrained",
                                     "fine-tuned backbone weights")
    blob = json.dumps({"config": config.to_dict(), "weights": weights_digest,
                       "backbones": backbone_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
        return map_length_sorted(texts, self.text_backbone)

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
