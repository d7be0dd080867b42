"""`hf:` transformers dual encoders: CLIP, ChineseCLIP, AltCLIP, SigLIP (hub id or local dir).

Images are preprocessed by our own PIL/numpy code from the model's processor config, so no
torchvision is needed and every backend shares one preprocessing path.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crossmodal.errors import UnknownModelError
from crossmodal.models.preprocess import features_tensor, images_to_tensor, l2_normalize
from crossmodal.models.protocol import ImagePreprocessing
from crossmodal.paths import file_sha256

SUPPORTED_TYPES = ("clip", "chinese_clip", "altclip", "siglip", "siglip2")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be asked (offline mode, or its host does not answer a
    connection within 2 s), else None: then loads use the cache only, and a model that is
    not cached fails at once instead of after ~27 s of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=2.0).close()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a sandbox refusing the network
        return f"{host} cannot be reached ({getattr(exc, 'strerror', None) or exc})"
    return None


def _processor_config(source: str, local_only: bool = False) -> dict:
    """preprocessor_config.json of a local dir or (cached) hub repo; {} when absent."""
    local = Path(source) / "preprocessor_config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    if Path(source).is_dir():
        return {}
    try:
        from transformers.utils import cached_file

        path = cached_file(source, "preprocessor_config.json", local_files_only=local_only,
                           _raise_exceptions_for_missing_entries=False)
    except OSError:
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else {}


def _weights_folder(source: str, local_only: bool = False) -> Path | None:
    """The folder holding the weights: a local dir, or the hub cache snapshot of one commit."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from transformers.utils import cached_file

        path = cached_file(source, "config.json", local_files_only=local_only,
                           _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return Path(path).parent if path else None


def _weights_digest(folder: Path | None) -> list[tuple[str, str]]:
    """Content hashes: a fine-tuned checkpoint has the same file names and sizes as its base."""
    if folder is None:
        return []
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return [(path.name, file_sha256(path)) for path in files]


def _patchify(pixels: torch.Tensor, patch: int) -> dict[str, torch.Tensor]:
    """SigLIP2 (naflex) takes flattened patches and their grid instead of an NCHW image."""
    n, channels, height, width = pixels.shape
    rows, cols = height // patch, width // patch
    # the patch layout of transformers' convert_image_to_patches: (row, col, y, x, channel)
    patches = pixels.reshape(n, channels, rows, patch, cols, patch).permute(0, 2, 4, 3, 5, 1)
    return {"pixel_values": patches.reshape(n, rows * cols, patch * patch * channels),
            "pixel_attention_mask": torch.ones(n, rows * cols, dtype=torch.long,
                                               device=pixels.device),
            "spatial_shapes": torch.tensor([[rows, cols]] * n, device=pixels.device)}


def preprocessing_from(config: dict, image_size: int, model_type: str) -> ImagePreprocessing:
    crop = config.get("crop_size") or config.get("size") or image_size
    if config.get("max_num_patches"):  # siglip2 naflex: the largest square grid in the budget
        crop = int(config.get("patch_size", 16)) * math.isqrt(int(config["max_num_patches"]))
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
        offline = None if Path(source).is_dir() else hub_unreachable()
        self._local_only = offline is not None
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=self._local_only)
        except (OSError, ValueError) as exc:
            if offline:
                raise UnknownModelError(
                    f"cannot load '{source}': not a local model folder and not in the hub cache, "
                    f"and the hub cannot be asked ({offline}): connect once to download it, "
                    "or name a local model folder") from None
            raise UnknownModelError(
                f"cannot load '{source}': not a local model folder, and not in the hub cache "
                f"(this machine may be offline): {str(exc).splitlines()[0]}"
            ) from exc
        if config.model_type not in SUPPORTED_TYPES:
            raise UnknownModelError(
                f"'{source}' is a {config.model_type} model; "
                f"hf: supports {', '.join(SUPPORTED_TYPES)}"
            )
        self.model_type = config.model_type
        self.model = AutoModel.from_pretrained(
            source, local_files_only=self._local_only).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=self._local_only)
        self.device = device
        text_config = self.model.config.text_config
        vision_config = self.model.config.vision_config
        positions = getattr(text_config, "max_position_embeddings", 77)
        if self.model_type == "altclip":  # XLM-R positions start after padding_idx (514 -> 512)
            positions -= (text_config.pad_token_id or 0) + 1
        self.context_length = int(min(
            positions, getattr(self.tokenizer, "model_max_length", 10**6) or 10**6
        ))
        patch = vision_config.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, list | tuple) else patch)
        image_size = getattr(vision_config, "image_size", None)  # siglip2 has num_patches instead
        if image_size is None:
            image_size = self.patch_size * math.isqrt(int(vision_config.num_patches))
        self.preprocessing = preprocessing_from(
            _processor_config(source, self._local_only), int(image_size), self.model_type
        )
        # SigLIP's text head projects to text_config.projection_size, which may differ from
        # hidden_size; the CLIP family has projection_dim on the top-level config.
        projection = (getattr(self.model.config, "projection_dim", None)
                      or getattr(text_config, "projection_size", None))
        self.dim = int(projection or text_config.hidden_size)
        self._fingerprint = self._make_fingerprint(source)

    def _make_fingerprint(self, source: str) -> str:
        config = self.model.config.to_diff_dict()
        # to_diff_dict stamps the installed version: upgrading transformers changes no vector
        config.pop("transformers_version", None)
        blob = {"config": config, "prep": self.preprocessing.as_dict(),
                "weights": _weights_digest(_weights_folder(source, self._local_only))}
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
        inputs = (_patchify(pixels, self.patch_size) if self.model_type == "siglip2"
                  else {"pixel_values": pixels})
        return l2_normalize(features_tensor(self.model.get_image_features(**inputs)))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
