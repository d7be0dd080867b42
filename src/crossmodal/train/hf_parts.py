"""`hf:` CLIP-family dual encoders as trainable parts: the same stages, freezing policies and
cached activations as towers (tower_parts.py, activations.py), through the block adapters
beside the hf model (`crossmodal.models.hf_blocks`). The result is a transformers folder
(`hf:OUTPUT_DIR/best`) that the registry loads as is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from crossmodal.errors import BadInputError
from crossmodal.models.batching import map_length_sorted, micro_batches
from crossmodal.models.hf_blocks import HFHeads, HFTextBlocks, HFVisionBlocks
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.storage import atomic_folder

TRAINABLE_TYPES = ("clip", "chinese_clip")


@dataclass
class HFSpec:
    """What the feature and activation caches key on (as a TowersConfig offers them)."""

    image: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)
    backbone_weights_path: Path | None = None  # the folder already holds fine-tuned weights


class HFTrainable:
    """An hf: encoder with the attributes training reads of a TowersEncoder: image_backbone,
    text_backbone (blocks / run_blocks), heads, preprocessing, image_features/text_features."""

    def __init__(self, source: str, context_length: int | None = None,
                 fresh_heads: bool = False, seed: int = 0):
        from crossmodal.models.hf import HFEncoder

        encoder = HFEncoder(source)
        if encoder.model_type not in TRAINABLE_TYPES:
            raise BadInputError(
                f"'{source}' is a {encoder.model_type} model; crossmodal train supports hf: "
                f"{', '.join(TRAINABLE_TYPES)} models (evaluate it with `crossmodal eval`)")
        if context_length:  # captions truncated to this many tokens, in training and after
            encoder.context_length = min(encoder.context_length, int(context_length))
        self.source, self.encoder = source, encoder
        model = encoder.model.eval()
        self.preprocessing = encoder.preprocessing
        self.image_backbone = HFVisionBlocks(model.vision_model)
        self.text_backbone = HFTextBlocks(model.text_model, encoder._tokenize,
                                          causal=encoder.model_type == "clip")
        self.heads = HFHeads(model)
        if fresh_heads:  # seeded, so a run's initial heads do not depend on what ran before
            self.heads.reset(seed)
        key = {"hf": encoder.fingerprint}
        self.config = HFSpec(image={**key, "side": "image"},
                             text={**key, "side": "text", "max_length": encoder.context_length})

    # Pooled features before the heads, by the very code the trainable blocks run.
    @torch.inference_mode()
    def image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        parts = [self.image_backbone.run_blocks(images_to_tensor(batch, self.preprocessing), 0)
                 for batch in micro_batches(images)]
        return torch.cat(parts) if parts else torch.empty(0, self.image_backbone.out_dim)

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        if not len(texts):
            return torch.empty(0, self.text_backbone.out_dim)

        def run(batch: list[str]) -> torch.Tensor:
            tokens = self.text_backbone.tokenize(batch)
            return self.text_backbone.run_blocks(tokens["input_ids"], tokens["attention_mask"], 0)

        return map_length_sorted(texts, run)

    # --- the result: a transformers folder ------------------------------------------------
    def save_best(self, out: Path) -> Path:
        """OUT/best: the source model with the best heads and blocks, written to a temp
        folder and renamed into place. Starts again from the source weights, so blocks that
        trained after the best validation do not leak into it."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        model = AutoModel.from_pretrained(self.source)
        heads = {"image.": "visual_projection.", "text.": "text_projection."}
        state = {_renamed(k, heads): v for k, v in load_file(str(out / "best.safetensors")).items()}
        backbones = out / "best-backbones.safetensors"
        if backbones.is_file():  # keys "image.vision_model.…" / "text.text_model.…"
            state.update({k.partition(".")[2]: v for k, v in load_file(str(backbones)).items()})
        unexpected = sorted(set(state) - set(model.state_dict()))
        if unexpected:
            raise BadInputError(f"{out}: trained weights do not fit {self.source} "
                                f"(unexpected {unexpected[:3]})")
        model.load_state_dict(state, strict=False)
        final = out / "best"
        for stale in [*out.glob(".best.*.tmp"), *out.glob(".best.old-*")]:  # a crashed save
            shutil.rmtree(stale, ignore_errors=True)
        with atomic_folder(final) as temp:
            model.save_pretrained(temp)
            tokenizer = self.encoder.tokenizer
            tokenizer.model_max_length = self.encoder.context_length  # context_length sticks
            tokenizer.save_pretrained(temp)
            from crossmodal.models.hf import _processor_config

            processor = _processor_config(self.source)
            if processor:
                (temp / "preprocessor_config.json").write_text(json.dumps(processor, indent=1))
        return final


def _renamed(key: str, prefixes: dict[str, str]) -> str:
    for old, new in prefixes.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def train_hf(config, source: str, resume: bool = True, progress: bool = True) -> dict:
    """run_training for hf: models: the towers flow, then OUT/best instead of tower.json."""
    from crossmodal.storage import atomic_save_json
    from crossmodal.train import distributed
    from crossmodal.train.fit import fit_encoder

    encoder = HFTrainable(source, config.context_length, config.fresh_heads, config.seed)
    best, skipped = fit_encoder(config, encoder, resume, progress)
    if distributed.rank_and_size()[0] != 0:
        return {}
    out = Path(config.output_dir).resolve()
    folder = encoder.save_best(out)
    atomic_save_json(out / "config.json", config.to_dict())
    return {**best, "model": f"hf:{folder}", "skipped": skipped, "log": str(out / "log.jsonl")}
