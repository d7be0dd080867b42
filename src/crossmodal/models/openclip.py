"""`open_clip:<arch>/<pretrained>` encoders (optional extra: pip install 'crossmodal[openclip]').

The nine OpenAI CLIP backbones may be named as OpenAI does: open_clip:ViT-B/32, open_clip:RN50.
Weights come from open_clip's cache or a local file given as <pretrained>.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crossmodal.errors import UnknownModelError, missing_dependency
from crossmodal.models.preprocess import images_to_tensor, l2_normalize
from crossmodal.models.protocol import ImagePreprocessing
from crossmodal.paths import file_sha256

# OpenAI name -> open_clip architecture (pretrained tag "openai").
OPENAI_MODELS = {
    "RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16",
    "RN50x64": "RN50x64", "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14", "ViT-L/14@336px": "ViT-L-14-336",
}


def parse_open_clip_name(name: str) -> tuple[str, str | None]:
    """'ViT-B/32' -> (ViT-B-32, openai); 'ViT-B-32/laion2b_s34b_b79k' -> (ViT-B-32, laion...)."""
    if name in OPENAI_MODELS:
        return OPENAI_MODELS[name], "openai"
    for alias, arch in OPENAI_MODELS.items():
        if name == f"{alias}/openai":
            return arch, "openai"
    arch, _, pretrained = name.partition("/")
    return arch, (pretrained or None)


class OpenCLIPEncoder:
    def __init__(self, name: str, model_id: str | None = None, device: str = "cpu"):
        try:
            import open_clip
        except ImportError as exc:
            raise missing_dependency("open_clip_torch", "openclip") from exc
        self.model_id = model_id or f"open_clip:{name}"
        arch, pretrained = parse_open_clip_name(name)
        if arch not in open_clip.list_models():
            raise UnknownModelError(f"open_clip has no architecture '{arch}' "
                                    f"(see open_clip.list_models())")
        self.model = open_clip.create_model(arch, pretrained=pretrained, device=device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.device = device
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(self.model.visual, "image_size", 224))
        size = size[0] if isinstance(size, tuple | list) else size
        self.preprocessing = ImagePreprocessing(
            size=int(size),
            mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
            std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
            resize="squash" if cfg.get("resize_mode") == "squash" else "shortest_edge",
            interpolation=cfg.get("interpolation", "bicubic"),
        )
        self.context_length = int(getattr(self.model, "context_length", 77))
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["x"]).to(device)).shape[-1])
        blob = {"arch": arch, "pretrained": pretrained, "prep": self.preprocessing.as_dict()}
        if pretrained and Path(pretrained).is_file():  # retrained weights keep their file name
            blob["weights"] = file_sha256(pretrained)
        text = json.dumps(blob, sort_keys=True)
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        pixels = images_to_tensor(images, self.preprocessing).to(self.device)
        return l2_normalize(self.model.encode_image(pixels))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self.model.encode_text(self.tokenizer(list(texts)).to(self.device)))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        tokens = self.tokenizer(list(texts), context_length=10_000)
        return [int((row != 0).sum()) for row in tokens]
