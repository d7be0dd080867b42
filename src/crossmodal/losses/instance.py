"""Instance classification loss (Dual-Path, Zheng et al., ACM TOMM 2020; used by IConE).

Every training image with its captions is one class (its instance id). ONE classifier
W (num_instances x dim) is shared by the image and the text branch, so an image and its
captions are pulled to the same class prototype, and so to each other:

    logits_v = s * norm(v) @ norm(W).T        logits_t = s * norm(t) @ norm(W).T
    L = w_img * CE(logits_v, id_v) + w_txt * CE(logits_t, id_t)   (defaults 0.5/0.5: the mean)

With ``normalize=False`` the logits are the plain ``v @ W.T`` of Dual-Path (no scale).
"""

from __future__ import annotations

import torch
from torch import nn


class InstanceLoss(nn.Module):
    """Softmax cross-entropy over instance ids with one classifier shared by both branches.

    No bias: instance classes are balanced by construction, so a per-class prior has nothing
    to learn, and with cosine logits a bias would break "logit = scaled cosine to prototype".

    ``normalize=True`` (default) L2-normalises features and classifier rows and multiplies by a
    fixed ``scale`` (NormFace, Wang et al. 2017; pytorch-metric-learning's InstanceLoss, after
    Dual-Path, is cosine-based too, gamma=64). Why: retrieval ranks by cosine, so the
    classifier should shape the same geometry; raw dot products let a branch lower its loss
    by growing feature norms instead. The scale must be large enough for a softmax over tens
    of thousands of classes to become confident (NormFace's bound); 30 is in the usual 16-64.
    """

    def __init__(self, dim: int, num_instances: int, image_weight: float = 0.5,
                 text_weight: float = 0.5, normalize: bool = True, scale: float = 30.0):
        super().__init__()
        if dim < 1 or num_instances < 1:
            raise ValueError(f"dim and num_instances must be >= 1, got {dim}, {num_instances}")
        self.dim, self.num_instances = dim, num_instances
        self.image_weight, self.text_weight = image_weight, text_weight
        self.normalize, self.scale = normalize, scale
        # The one shared parameter; rows start near unit norm so both modes begin sane.
        self.weight = nn.Parameter(torch.randn(num_instances, dim) / dim**0.5)

    def get_config_dict(self) -> dict[str, float | bool]:
        """The hyper-parameters (dim and num_instances come from the data, not a config)."""
        return {"image_weight": self.image_weight, "text_weight": self.text_weight,
                "normalize": self.normalize, "scale": self.scale}

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_instances) of either branch: the same ``self.weight`` for both."""
        if emb.dim() != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"embeddings must be (N, {self.dim}), got {tuple(emb.shape)}")
        if not self.normalize:
            return emb @ self.weight.T
        weight = nn.functional.normalize(self.weight, dim=-1)
        return self.scale * nn.functional.normalize(emb, dim=-1) @ weight.T

    def _check_ids(self, ids: torch.Tensor, n: int, name: str) -> None:
        # Fail here with a readable message: on CUDA, cross_entropy with a bad target only
        # raises an opaque device-side assert (the .min()/.max() cost one host sync per step).
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"{name} must be integer instance ids, got dtype {ids.dtype}")
        if ids.dim() != 1 or ids.shape[0] != n:
            raise ValueError(f"{name} must be 1-D with {n} entries (one per embedding), "
                             f"got shape {tuple(ids.shape)}")
        if n and (int(ids.min()) < 0 or int(ids.max()) >= self.num_instances):
            raise ValueError(f"{name} must lie in [0, num_instances={self.num_instances}), "
                             f"got min {int(ids.min())}, max {int(ids.max())}")

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor,
                image_ids: torch.Tensor, text_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted sum of the two CE terms; ``text_ids`` defaults to ``image_ids`` (1:1 pairs)."""
        text_ids = image_ids if text_ids is None else text_ids
        self._check_ids(image_ids, image_emb.shape[0], "image_ids")
        self._check_ids(text_ids, text_emb.shape[0], "text_ids")
        ce = nn.functional.cross_entropy
        return (self.image_weight * ce(self.logits(image_emb), image_ids.long())
                + self.text_weight * ce(self.logits(text_emb), text_ids.long()))
