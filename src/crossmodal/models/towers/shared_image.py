"""One image backbone pass per image for the towers of a fusion that share the backbone.

lite-en and lite-zh run the same frozen EfficientNet-Lite0 on the same pixels, lite-en-lite2
and lite-zh-lite2 the same Lite2; only their linear image heads differ. Each tower's own ONNX
graph runs backbone and head together, so a four-tower fusion ran each backbone twice. Here a
group of such towers runs one backbone-only graph (pooled features, exported on first use
into the export cache) on the plain pixels and, where some member uses flip TTA, on the mirror
image; each member's head is then one small matrix product in numpy. The
vectors are the members' own (same graph arithmetic, cosine >= 0.9999), so a fusion's
fingerprint and its indexes stay as they were.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.models.batching import micro_batches
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.towers.config import HeadSpec, ImageSpec

log = logging.getLogger("crossmodal.runtime")


@dataclass
class ImageHead:
    """One member's linear image head and the views it averages ("plain", "mirror")."""

    weight: np.ndarray  # (dim, features), as nn.Linear stores it
    bias: np.ndarray
    views: tuple[str, ...]

    def embed(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Unit embeddings from pooled features per view, as TowersImagePath computes them."""
        views = [_unit(features[view] @ self.weight.T + self.bias) for view in self.views]
        return views[0] if len(views) == 1 else _unit(sum(views) / len(views))


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def backbone_key(encoder) -> tuple | None:
    """What a shared pass must agree on (backbone, its weights, pixels); None when this member
    cannot share: not a towers: model run by ONNX Runtime, fine-tuned backbone blocks, or a
    head that is not one linear map."""
    from crossmodal.models.towers.onnx_towers import TowersOnnxEncoder

    if not isinstance(encoder, TowersOnnxEncoder):
        return None
    config = encoder.config
    if config.backbone_weights or config.weights_path is None:
        return None
    if HeadSpec.of(config.head).type != "linear":
        return None
    image = ImageSpec.of(config.image)
    return (image.backbone, image.weights, encoder.preprocessing)


def image_head_of(encoder) -> ImageHead:
    from safetensors.numpy import load_file

    state = load_file(str(encoder.config.weights_path))
    return ImageHead(state["image.linear.weight"].astype(np.float32),
                     state["image.linear.bias"].astype(np.float32), tuple(encoder.image_views))


class CachedGraph:
    """An ONNX graph exported on first use into the export cache (at `path()`, by
    `_export`), then loaded once."""

    _session = None

    def path(self) -> Path:
        raise NotImplementedError

    def _export(self, path: Path) -> None:
        raise NotImplementedError

    def session(self):
        if self._session is None:
            from crossmodal.models.onnx.runtime import _session

            path = self.path()
            if not path.is_file():
                self._export(path)
            self._session = _session(path)
        return self._session


class SharedBackbone(CachedGraph):
    """A backbone-only ONNX graph: (n, 3, H, W) pixels -> (n, features) pooled features."""

    def __init__(self, image: ImageSpec, preprocessing):
        self.image, self.preprocessing = image, preprocessing

    def path(self) -> Path:
        from crossmodal.models.towers.onnx_towers import exporter_digest
        from crossmodal.paths import export_cache_dir

        what = f"{self.image.backbone}|{self.image.weights}|{self.preprocessing.size}|"
        digest = hashlib.sha256(what.encode() + Path(__file__).read_bytes()).hexdigest()[:12]
        name = f"backbone-{self.image.backbone}-{digest}-{exporter_digest()}.onnx"
        return export_cache_dir() / name

    def _export(self, path: Path) -> None:
        import torch

        from crossmodal.models.onnx.export import export_module
        from crossmodal.models.towers.backbones import build_image_backbone

        log.info("exporting the %s backbone for ONNX Runtime into %s (first use only)…",
                 self.image.backbone, path)
        size = self.preprocessing.size
        export_module(build_image_backbone(self.image).eval(),
                      {"pixel_values": torch.randn(2, 3, size, size)}, path, "features",
                      {"pixel_values": {0: "batch"}, "features": {0: "batch"}})

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return self.session().run(None, {"pixel_values": pixels})[0]


class SharedImageGroup:
    """Members (by position in the fusion) sharing one backbone pass per image."""

    def __init__(self, members: list[int], encoders: list, image: ImageSpec):
        self.members = members
        self.heads = [image_head_of(encoders[i]) for i in members]
        self.views = tuple(dict.fromkeys(v for head in self.heads for v in head.views))
        self.preprocessing = encoders[members[0]].preprocessing
        self.backbone = SharedBackbone(image, self.preprocessing)

    def encode(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Each member's unit image embeddings, in the order of `members`."""
        parts: list[list[np.ndarray]] = [[] for _ in self.members]
        for batch in micro_batches(images):
            pixels = images_to_tensor(batch, self.preprocessing).contiguous().numpy()
            # one run per view, not both stacked: a batch of 8 keeps the activations in cache
            # (17% faster than 16 on a loaded 2-core Xeon); the mirror flips left to right
            by_view = {view: self.backbone.features(np.ascontiguousarray(
                pixels[..., ::-1] if view == "mirror" else pixels)) for view in self.views}
            for part, head in zip(parts, self.heads, strict=True):
                part.append(head.embed(by_view))
        return [np.concatenate(part) for part in parts]


def shared_image_groups(encoders: list) -> list[SharedImageGroup]:
    """The groups of two or more members that can share a backbone pass."""
    by_key: dict[tuple, list[int]] = {}
    for position, encoder in enumerate(encoders):
        key = backbone_key(encoder)
        if key is not None:
            by_key.setdefault(key, []).append(position)
    return [SharedImageGroup(members, encoders, ImageSpec.of(encoders[members[0]].config.image))
            for members in by_key.values() if len(members) > 1]
