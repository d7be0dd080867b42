"""Trainable projection heads that map each backbone into the shared space."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from crossmodal.errors import UnknownModelError
from crossmodal.models.towers.config import HeadSpec
from crossmodal.models.towers.grams import GramBag


class ProjectionHead(nn.Module):
    """`linear`: one matrix. `mlp`: linear plus a residual two-layer branch (CLIP-style heads)."""

    def __init__(self, in_dim: int, out_dim: int, kind: str = "linear", hidden: int = 1024,
                 dropout: float = 0.0):
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise UnknownModelError(f"unknown head type '{kind}' (known: linear, mlp)")
        self.kind = kind
        self.linear = nn.Linear(in_dim, out_dim)
        self.branch = (
            nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(hidden, out_dim),
            )
            if kind == "mlp"
            else None
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.linear(features)
        if self.branch is not None:
            out = out + self.branch(features)
        return out


class TowerHeads(nn.Module):
    """Both heads, the learned temperature and the optional gram bag of the text side, saved
    together as one safetensors file (the gram vocabulary in its metadata).

    spec: {"type": "linear"|"mlp", "dim", "hidden", "dropout",
           "grams": {"unit": "words"|"chars", "min_count", "dropout"}}"""

    def __init__(self, image_dim: int, text_dim: int, spec: dict):
        super().__init__()
        head = HeadSpec.of(spec)
        self.image = ProjectionHead(image_dim, head.dim, head.type, head.hidden, head.dropout)
        self.text = ProjectionHead(text_dim, head.dim, head.type, head.hidden, head.dropout)
        grams = head.grams
        self.grams = (GramBag(head.dim, grams.unit, grams.min_count, grams.dropout)
                      if grams and spec.get("grams") else None)  # {} means no bag, as before
        self.logit_scale = nn.Parameter(torch.tensor(head.logit_scale))
        self.dim = head.dim

    def save(self, path: Path) -> None:
        from crossmodal.storage import atomic_save_safetensors

        metadata = None if self.grams is None else {"grams_vocab": self.grams.vocab_json()}
        atomic_save_safetensors(Path(path), self.state_dict(), metadata)

    def load(self, path: Path) -> None:
        if not Path(path).is_file():
            raise UnknownModelError(
                f"tower head weights not found at {path}: train them with "
                "`crossmodal train-heads` or fix the 'weights' entry of the tower config"
            )
        with safe_open(str(path), "pt") as weights:
            metadata = weights.metadata() or {}
            state = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
        if self.grams is not None and "grams_vocab" in metadata:
            self.grams.set_vocab(json.loads(metadata["grams_vocab"]))
        self._load_checked(state, str(path))

    def _load_checked(self, state: dict[str, torch.Tensor], source: str) -> None:
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch: e.g. another gram vocabulary
            raise UnknownModelError(f"head weights {source} do not fit the config: "
                                    f"{str(exc).splitlines()[-1].strip()}") from exc
        if missing or unexpected:
            raise UnknownModelError(
                f"head weights {source} do not fit the config (missing {missing}, "
                f"unexpected {unexpected})"
            )


def embed_images(heads: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Unit-length image embeddings. (n, views, d) features (an image and its mirror image)
    give the mean of the views' unit embeddings, made unit again."""
    if features.ndim == 2:
        return nn.functional.normalize(heads.image(features), dim=-1)
    views = nn.functional.normalize(heads.image(features), dim=-1)
    return nn.functional.normalize(views.mean(1), dim=-1)


def embed_texts(heads: nn.Module, features: torch.Tensor, texts: Sequence[str] | None = None
                ) -> torch.Tensor:
    """Unit-length text embeddings: the text head, plus the gram bag when the heads have one
    (which then needs the texts themselves)."""
    out = heads.text(features)
    grams = getattr(heads, "grams", None)
    if grams is not None:
        if texts is None:
            raise UnknownModelError("these heads add a gram bag: pass the texts too")
        out = out + grams(texts)
    return nn.functional.normalize(out, dim=-1)
