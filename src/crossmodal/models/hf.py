"""`hf:` transformers dual encoders: CLIP, ChineseCLIP, AltCLIP, SigLIP (hub id or local dir).

Images are preprocessed by our own PIL/numpy code from the model's processor config, so no
torchvision is needed and every backend shares one preprocessing path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crossmodal.errors import UnknownModelError
from crossmodal.models.preprocess import features_tensor, images_to_tensor, l2_normalize
from crossmodal.models.protocol import ImagePreprocessing

SUPPORTED_TYPES = ("clip", "chinese_clip", "altclip", "siglip", "siglip2")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _processor_config(source: str) -> dict:
    """preprocessor_config.json of a local dir or (cached) hub repo; {} when absent."""
    local = Path(source) / "preprocessor_config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    if Path(source).is_dir():
        return {}
    try:
        from transformers.utils import cached_file

        path = cached_file(source, "preprocessor_config.json",
                           _raise_exceptions_for_missing_entries=False)
    except OSError:
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else {}


def preprocessing_from(config: dict, image_size: int, model_type: str) -> ImagePreprocessing:
    crop = config.get("crop_size") or config.get("size") or image_size
    if isinstance(crop, dict):
        crop = crop.get("height") or crop.get("shortest_edge") or image_size
    squash = model_type.startswith("siglip") or not config.get("do_center_crop", True)
    default_mean = (0.5, 0.5, 0.5) if model_type.startswith("siglip") else CLIP_MEAN
    default_std = (0.5, 0.5, 0.5) if model_type.startswith("siglip") else CLIP_STD
    return ImagePreprocessing(
        size=int(crop),
        mean=tuple(config.get("image_mean", default_mean)),
        std=tuple(config.get("image_std", default_std)),
        resize="squash" if squash else "shortest_edge",
        interpolation=_RESAMPLE_NAMES.get(config.get("resample", 3), "bicubic"),
    )


class HFEncoder:
    def __init__(self, source: str, model_id: str | None = None, device: str = "cpu"):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.model_id = model_id or f"hf:{source}"
        try:
            config = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise UnknownModelError(
                f"cannot load '{source}': not a local model folder, and not in the hub cache "
                f"(this machine may be offline): {str(exc).splitlines()[0]}"
            ) from exc
        if config.model_type not in SUPPORTED_TYPES:
            raise UnknownModelError(
                f"'{source}' is a {config.model_type} model; hf: supports {', '.join(SUPPORTED_TYPES)}"
            )
        self.model_type = config.model_type
        self.model = AutoModel.from_pretrained(source).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.device = device
        text_config = self.model.config.text_config
        vision_config = self.model.config.vision_config
        self.context_length = int(min(
            getattr(text_config, "max_position_embeddings", 77),
            getattr(self.tokenizer, "model_max_length", 10**6) or 10**6,
        ))
        self.preprocessing = preprocessing_from(
            _processor_config(source), int(vision_config.image_size), self.model_type
        )
        projection = getattr(self.model.config, "projection_dim", None)
        self.dim = int(projection or text_config.hidden_size)
        self._fingerprint = self._make_fingerprint(source)

    def _make_fingerprint(self, source: str) -> str:
        blob = {"config": self.model.config.to_diff_dict(),
                "commit": getattr(self.model.config, "_commit_hash", None),
                "prep": self.preprocessing.as_dict()}
        folder = Path(source)
        if folder.is_dir():  # local weights: their names and sizes identify them cheaply
            blob["files"] = sorted((p.name, p.stat().st_size) for p in folder.glob("*.safetensors"))
            blob["files"] += sorted((p.name, p.stat().st_size) for p in folder.glob("*.bin"))
        text = json.dumps(blob, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        # SigLIP was trained on max_length padding; the others pad to the longest text.
        padding = "max_length" if self.model_type.startswith("siglip") else True
        tokens = self.tokenizer(list(texts), padding=padding, truncation=True,
                                max_length=self.context_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in tokens.items()}

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        tokens = self._tokenize(texts)
        return l2_normalize(features_tensor(self.model.get_text_features(**tokens)))

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        pixels = images_to_tensor(images, self.preprocessing).contiguous().to(self.device)
        return l2_normalize(features_tensor(self.model.get_image_features(pixel_values=pixels)))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
