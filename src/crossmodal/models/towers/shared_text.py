"""One text-model pass per query for the towers of a fusion that share a frozen text model.

lite-en and lite-en-lite2 run the same all-MiniLM-L6-v2 on the same tokens; only their linear
text heads and gram bags differ. Batches of captions take the PyTorch path, where the members
already share the model's features (crossmodal.models.towers.recent_batches). A lone query
takes ONNX Runtime, where each member's graph runs model and head together, so every English
query ran MiniLM twice. Here a group of such towers runs one model-only graph (mean-pooled,
unit features; exported on first use into the export cache) and each member's head is a small
matrix product in numpy plus its gram bag. The vectors are the members' own (the same
arithmetic split in two, cosine >= 0.9999), so fingerprints and indexes stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.models.batching import map_length_sorted
from crossmodal.models.towers.config import HeadSpec
from crossmodal.models.towers.shared_image import CachedGraph, _unit

log = logging.getLogger("crossmodal.runtime")


@dataclass
class TextHead:
    """One member's linear text head and gram bag (None: the member has none)."""

    weight: np.ndarray  # (dim, features), as nn.Linear stores it
    bias: np.ndarray
    grams: object | None  # a GramTable: texts -> (n, dim)

    def embed(self, features: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        out = features @ self.weight.T + self.bias
        if self.grams is not None:
            out = out + self.grams(list(texts))
        return _unit(out)


def text_model_key(encoder) -> str | None:
    """What a shared pass must agree on (the text model as configured); None when this
    member cannot share: not a towers: model run by ONNX Runtime, a fine-tuned or
    non-transformer text model, or a head that is not one linear map."""
    from crossmodal.models.towers.onnx_towers import TowersOnnxEncoder

    if not isinstance(encoder, TowersOnnxEncoder):
        return None
    config = encoder.config
    if config.backbone_weights or config.weights_path is None:
        return None
    if config.text.get("backbone") != "sentence-transformers":
        return None
    if HeadSpec.of(config.head).type != "linear":
        return None
    return json.dumps(config.text, sort_keys=True)


class SharedTextModel(CachedGraph):
    """A text-model-only ONNX graph: tokens -> (n, features) mean-pooled unit features."""

    def __init__(self, key: str, first_member):
        self.key, self._member = key, first_member

    def path(self) -> Path:
        from crossmodal.models.towers.onnx_towers import exporter_digest
        from crossmodal.paths import export_cache_dir

        digest = hashlib.sha256(self.key.encode() + Path(__file__).read_bytes()).hexdigest()
        return export_cache_dir() / f"text-model-{digest[:12]}-{exporter_digest()}.onnx"

    def _export(self, path: Path) -> None:
        import torch

        from crossmodal.models.onnx.export import export_module
        from crossmodal.models.onnx.graphs import EXAMPLE_TEXTS, PooledTextPath
        from crossmodal.models.onnx.tokens import tokenize

        log.info("exporting the shared text model for ONNX Runtime into %s (first use only)…",
                 path)
        backbone = self._member.torch.text_backbone
        tokens = tokenize(backbone.tokenizer, EXAMPLE_TEXTS, backbone.max_length)
        inputs = {name: torch.from_numpy(tokens[name]) for name in ("input_ids",
                                                                    "attention_mask")}
        axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
        export_module(PooledTextPath(backbone.model).eval(), inputs, path, "features",
                      axes | {"features": {0: "batch"}})

    def features(self, texts: Sequence[str]) -> np.ndarray:
        from crossmodal.models.onnx.tokens import tokenize

        engine = self._member._engine()  # the member's export: its tokenizer and context
        tokens = tokenize(engine.tokenizer, texts, engine._max_length)
        feed = {name: tokens[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        return self.session().run(None, feed)[0]


class SharedTextGroup:
    """Members (by position in the fusion) sharing one text-model pass per query."""

    def __init__(self, members: list[int], encoders: list, key: str):
        self.members = members
        self.encoders = [encoders[i] for i in members]
        self.model = SharedTextModel(key, self.encoders[0])
        self._heads: list[TextHead] | None = None

    def serves(self, batch: int) -> bool:
        """Whether the members would run this batch in ONNX Runtime (lone queries; every
        batch where PyTorch bf16 is not the faster text runtime)."""
        return all(_runs_in_onnx(e, batch) for e in self.encoders)

    def heads(self) -> list[TextHead]:
        if self._heads is None:
            from safetensors.numpy import load_file

            self._heads = []
            for encoder in self.encoders:
                state = load_file(str(encoder.config.weights_path))
                self._heads.append(TextHead(state["text.linear.weight"].astype(np.float32),
                                            state["text.linear.bias"].astype(np.float32),
                                            encoder._engine()._grams))
        return self._heads

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each member's unit text embeddings, in the order of `members`."""
        features = map_length_sorted(list(texts), self.model.features)
        return [head.embed(features, texts) for head in self.heads()]


def _runs_in_onnx(encoder, batch: int) -> bool:
    from crossmodal.models.towers.onnx_towers import SMALL_TEXT_BATCH

    return getattr(encoder, "text_runtime", None) == "onnx" or batch <= SMALL_TEXT_BATCH


def may_share(encoders: list, batch: int) -> bool:
    """Whether any member could run a batch of this size in ONNX Runtime, where a shared
    pass would serve it (else the groups need not be set up at all)."""
    return any(_runs_in_onnx(e, batch) for e in encoders)


def shared_text_groups(encoders: list, reads: list[tuple[str, ...]]) -> list[SharedTextGroup]:
    """The groups of two or more members that read the same texts with the same text model."""
    by_key: dict[tuple, list[int]] = {}
    for position, (encoder, languages) in enumerate(zip(encoders, reads, strict=True)):
        key = text_model_key(encoder)
        if key is not None:
            by_key.setdefault((key, languages), []).append(position)
    return [SharedTextGroup(members, encoders, key) for (key, _), members in by_key.items()
            if len(members) > 1]
