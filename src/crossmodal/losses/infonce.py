"""Symmetric InfoNCE (CLIP) with a learnable temperature and multi-positive targets."""

from __future__ import annotations

import torch
from torch import nn

from crossmodal.losses.temperature import Temperature


class InfoNCELoss(nn.Module):
    """Image-text contrastive loss.

    With `image_ids`/`text_ids`, every pair sharing an id is a positive (several captions of
    one image in a batch are not false negatives); the target is uniform over positives.
    The temperature is a learnable ``Temperature`` in [min_tau, max_tau] (the trainer clamps
    its stored value after each step).
    """

    def __init__(self, tau: float = 0.07, learnable: bool = True, min_tau: float = 0.01,
                 max_tau: float = 1.0):
        super().__init__()
        self.tau = Temperature(tau, learnable, min_tau, max_tau)

    @property
    def log_scale(self) -> torch.Tensor:
        return self.tau.log_scale

    @property
    def scale(self) -> torch.Tensor:
        return self.tau()

    def get_config_dict(self) -> dict[str, float | bool]:
        return self.tau.get_config_dict()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "log_scale"  # checkpoints from before the shared Temperature
        if old in state_dict:
            state_dict[prefix + "tau.log_scale"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor,
                image_ids: torch.Tensor | None = None,
                text_ids: torch.Tensor | None = None) -> torch.Tensor:
        image_emb = nn.functional.normalize(image_emb, dim=-1)
        text_emb = nn.functional.normalize(text_emb, dim=-1)
        logits = self.scale * image_emb @ text_emb.T
        if image_ids is None:
            if logits.shape[0] != logits.shape[1]:
                raise ValueError("without ids, image and text batches must be paired 1:1")
            target = torch.arange(logits.shape[0], device=logits.device)
            return 0.5 * (nn.functional.cross_entropy(logits, target)
                          + nn.functional.cross_entropy(logits.T, target))
        text_ids = image_ids if text_ids is None else text_ids
        positives = (image_ids[:, None] == text_ids[None, :]).to(logits.dtype)
        i2t = -(positives / positives.sum(1, keepdim=True)) * logits.log_softmax(1)
        t2i = -(positives.T / positives.T.sum(1, keepdim=True)) * logits.T.log_softmax(1)
        return 0.5 * (i2t.sum(1).mean() + t2i.sum(1).mean())
