"""Trainable projection heads that map each backbone into the shared space."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from crossmodal.errors import UnknownModelError


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
    """Both heads and the learned temperature, saved together as one safetensors file."""

    def __init__(self, image_dim: int, text_dim: int, spec: dict):
        super().__init__()
        dim = int(spec.get("dim", 256))
        kind = spec.get("type", "linear")
        hidden = int(spec.get("hidden", 1024))
        dropout = float(spec.get("dropout", 0.0))
        self.image = ProjectionHead(image_dim, dim, kind, hidden, dropout)
        self.text = ProjectionHead(text_dim, dim, kind, hidden, dropout)
        self.logit_scale = nn.Parameter(torch.tensor(float(spec.get("logit_scale", 2.659))))
        self.dim = dim

    def save(self, path: Path) -> None:
        from crossmodal.index.storage import atomic_save_safetensors

        atomic_save_safetensors(Path(path), self.state_dict())

    def load(self, path: Path) -> None:
        if not Path(path).is_file():
            raise UnknownModelError(
                f"tower head weights not found at {path}: train them with "
                "`crossmodal train-heads` or fix the 'weights' entry of the tower config"
            )
        state = load_file(str(path))
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UnknownModelError(
                f"head weights {path} do not fit the config (missing {missing}, "
                f"unexpected {unexpected})"
            )
