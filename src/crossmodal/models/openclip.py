"""`open_clip:<arch>/<pretrained>` encoders (optional extra: pip install 'crossmodal[openclip]').

The nine OpenAI CLIP backbones may be named as OpenAI does: open_clip:ViT-B/32, open_clip:RN50
(weights: open_clip's cache, downloaded there by open_clip when online). <pretrained> is an
open_clip tag, a local weights file, or `random` / `random-<seed>`: the architecture with seeded
random weights (seed 0 by default), for tests and speed measurements where no weights exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crossmodal.errors import UnknownModelError, missing_dependency
from crossmodal.models.preprocess import _RESAMPLE, images_to_tensor, l2_normalize
from crossmodal.models.protocol import ImagePreprocessing
from crossmodal.paths import file_sha256

# OpenAI name -> open_clip architecture (pretrained tag "openai").
OPENAI_MODELS = {
    "RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16",
    "RN50x64": "RN50x64", "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14", "ViT-L/14@336px": "ViT-L-14-336",
}
RANDOM_TAG = "random"
_RANDOM = re.compile(r"random(?:-(\d+))?")
# open_clip's CLIP tokenizer output for texts this long is rows x 10k ids: keep chunks small.
_LENGTH_CHUNK = 256


def parse_open_clip_name(name: str) -> tuple[str, str | None]:
    """'ViT-B/32' -> (ViT-B-32, openai); 'ViT-B-32/laion2b_s34b_b79k' -> (ViT-B-32, laion...);
    'ViT-B/32/random' -> (ViT-B-32, random)."""
    if name in OPENAI_MODELS:
        return OPENAI_MODELS[name], "openai"
    for alias, arch in OPENAI_MODELS.items():
        if name.startswith(f"{alias}/"):  # an OpenAI name holds a slash of its own
            return arch, name[len(alias) + 1:] or "openai"
    arch, _, pretrained = name.partition("/")
    return arch, (pretrained or None)


def random_seed(pretrained: str | None) -> int | None:
    """The seed a `random` / `random-<seed>` tag names; None for any other tag or file."""
    match = _RANDOM.fullmatch(pretrained or "")
    if match is None:
        return None
    return int(match.group(1) or 0)


@dataclass(frozen=True)
class OpenCLIPSpec:
    """What to build: open_clip architecture, weights (tag or file), seed, activation."""

    arch: str
    pretrained: str | None
    seed: int | None  # random weights when set
    quick_gelu: bool

    @classmethod
    def from_name(cls, name: str, open_clip) -> OpenCLIPSpec:
        arch, pretrained = parse_open_clip_name(name)
        if arch not in open_clip.list_models():
            raise UnknownModelError(f"open_clip has no architecture '{arch}' "
                                    f"(see open_clip.list_models())")
        if not pretrained:
            # open_clip would quietly build random weights: nobody asking for a model means that
            raise UnknownModelError(
                f"open_clip:{name} names no weights: add /<tag> (one of "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}), "
                f"/<weights file>, or /{RANDOM_TAG} for seeded random weights")
        seed = random_seed(pretrained)
        tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) if seed is None else {}
        if seed is None and not tag_cfg and not Path(pretrained).is_file():
            raise UnknownModelError(
                f"'{pretrained}' is neither an open_clip tag of {arch} (one of "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}), "
                f"nor a weights file, nor {RANDOM_TAG} / {RANDOM_TAG}-<seed>")
        is_openai = any(name == a or name.startswith(f"{a}/") for a in OPENAI_MODELS)
        if not tag_cfg and is_openai:  # random or retrained weights keep OpenAI's activation
            tag_cfg = open_clip.get_pretrained_cfg(arch, "openai")
        # open_clip >= 3 builds e.g. RN50 with nn.GELU even for the OpenAI tag (it only warns);
        # the weights were trained with QuickGELU, so vectors would be off without this.
        return cls(arch, None if seed is not None else pretrained, seed,
                   bool(tag_cfg.get("quick_gelu", False)))


def _build_model(spec: OpenCLIPSpec, open_clip, device: str) -> torch.nn.Module:
    """The open_clip model; random weights are drawn from their own seeded generator state,
    so loading one leaves the caller's torch RNG as it was and two loads are identical."""
    kwargs = {"device": device, "force_quick_gelu": spec.quick_gelu}
    if spec.seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            # open_clip logs a warning that the model is random: here that was asked for
            quiet = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)
            try:
                return open_clip.create_model(spec.arch, pretrained=None, **kwargs).eval()
            finally:
                logging.getLogger().setLevel(quiet)
    try:
        return open_clip.create_model(spec.arch, pretrained=spec.pretrained,
                                      require_pretrained=True, **kwargs).eval()
    except RuntimeError as exc:  # not in open_clip's cache and offline, or a bad file
        raise UnknownModelError(
            f"cannot load open_clip {spec.arch} weights '{spec.pretrained}' (open_clip's "
            f"cache, or a download when online): {str(exc).splitlines()[0][:300]}") from exc


def preprocessing_of(model: torch.nn.Module) -> ImagePreprocessing:
    """open_clip's eval transform (its preprocess_cfg) as our PIL/numpy preprocessing."""
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, tuple | list) else size
    mode = cfg.get("resize_mode", "shortest")
    interpolation = cfg.get("interpolation", "bicubic")
    if mode not in ("shortest", "squash") or interpolation not in _RESAMPLE:
        raise UnknownModelError(f"open_clip preprocessing resize_mode={mode!r}, interpolation="
                                f"{interpolation!r} is not supported (shortest/squash; "
                                f"{', '.join(_RESAMPLE)})")
    return ImagePreprocessing(
        size=int(size),
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        resize="squash" if mode == "squash" else "shortest_edge",
        interpolation=interpolation,
    )


class OpenCLIPEncoder:
    def __init__(self, name: str, model_id: str | None = None, device: str = "cpu"):
        try:
            import open_clip
        except ImportError as exc:
            raise missing_dependency("open_clip_torch", "openclip") from exc
        self.model_id = model_id or f"open_clip:{name}"
        self.spec = OpenCLIPSpec.from_name(name, open_clip)
        self.model = _build_model(self.spec, open_clip, device)
        self.tokenizer = open_clip.get_tokenizer(self.spec.arch)
        self.device = device
        self.preprocessing = preprocessing_of(self.model)
        self.context_length = int(getattr(self.model, "context_length", None)
                                  or getattr(self.tokenizer, "context_length", 77))
        embed_dim = open_clip.get_model_config(self.spec.arch).get("embed_dim")
        self.dim = int(embed_dim or self.encode_texts(["x"]).shape[-1])
        self.fingerprint = self._make_fingerprint(open_clip.__version__)

    def _make_fingerprint(self, open_clip_version: str) -> str:
        spec = self.spec
        blob = {"arch": spec.arch, "pretrained": spec.pretrained, "quick_gelu": spec.quick_gelu,
                "prep": self.preprocessing.as_dict()}
        if spec.pretrained and Path(spec.pretrained).is_file():  # retrained weights: content
            blob["weights"] = file_sha256(spec.pretrained)
        if spec.seed is not None:
            # random weights are whatever open_clip's init draws under torch's generator
            blob.update(seed=spec.seed, open_clip=open_clip_version,
                        torch=torch.__version__.split("+")[0])
        digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]
        # random weights say so wherever the fingerprint is shown (info, mismatch errors)
        return digest if spec.seed is None else f"{RANDOM_TAG}-seed{spec.seed}-{digest}"

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
        tokens = self.tokenizer(list(texts), context_length=self.context_length)
        return l2_normalize(self.model.encode_text(tokens.to(self.device)))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts with start and end tokens, untruncated."""
        tokenizer = self.tokenizer
        if hasattr(tokenizer, "sot_token_id") and getattr(tokenizer, "reduction_fn", 1) is None:
            # CLIP's BPE tokenizer: the ids alone, no 10k-wide padded rows
            return [len(tokenizer.encode(text)) + 2 for text in texts]
        lengths: list[int] = []
        for start in range(0, len(texts), _LENGTH_CHUNK):
            rows = tokenizer(list(texts[start:start + _LENGTH_CHUNK]), context_length=10_000)
            lengths += [int((row != 0).sum()) for row in rows]
        return lengths
