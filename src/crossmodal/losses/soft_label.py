"""CUSA soft-label alignment (Huang et al., AAAI 2024), after lerogo/aaai24_itr_cusa.

Follows unire/model.py and configs/*/cusa.yaml of the authors' code. A frozen teacher's
image-image (T_vv) and text-text (T_tt) similarities over the batch become soft labels
q = softmax(T / tau_T) (tau_T = 1, fixed); student rows p = softmax(S / tau), where S are cosine
similarities of the student embeddings (S_vt image-text, S_tv = S_vt.T, S_vv, S_tt):

    KL(T, S, tau) = mean_i sum_j q_ij (log q_ij - log p_ij)
    CSA = 1/2 [KL(T_vv, S_vt, tau) + KL(T_tt, S_tv, tau)]
    USA = 1/2 [KL(T_vv, S_vv, tau_v) + KL(T_tt, S_tt, tau_t)]

KL is summed over a row and averaged over rows (``kl_div(..., reduction="batchmean")``).
Diagonal: as in the authors' code, rows span the whole B x B matrix, self-similarity included
(no masking); in CSA the diagonal of S_vt is the matching pair, and in USA the student's
self-cosine is always 1, so its diagonal logit is the constant 1/tau.

CUSA trains InfoNCE + 0.1 * CSA + 0.5 * USA (``CUSALoss`` holds the two weights). Its InfoNCE is
``InfoNCELoss(tau=0.05, min_tau=0.01, max_tau=0.1)`` (learnable). Teachers in the paper: Unicom
image features, all-mpnet-base-v2 text features; ``teacher_similarity`` turns them into T.
Caveat: cusa.yaml's ``contrastive_loss_mode: "mean"`` averages -log p * target over the B
columns, so the authors' contrastive term is InfoNCELoss / B (B = 128); the 0.1 / 0.5 weights
were tuned against that smaller term.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from crossmodal.losses.temperature import Temperature

CSA_WEIGHT, USA_WEIGHT = 0.1, 0.5  # cusa.yaml: cross_softlabel.rate, uni_softlabel.rate


def teacher_similarity(features: torch.Tensor) -> torch.Tensor:
    """(B, B) cosine similarity of teacher features, as the authors' ``util.cos_sim``."""
    with torch.no_grad():
        features = F.normalize(features.float(), dim=-1)
        return features @ features.T


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def _kl(student_sim: torch.Tensor, scale: torch.Tensor, teacher_sim: torch.Tensor,
        teacher_scale: torch.Tensor) -> torch.Tensor:
    if teacher_sim.shape != student_sim.shape:
        raise ValueError(f"teacher similarity {tuple(teacher_sim.shape)} must match the "
                         f"student's {tuple(student_sim.shape)} (B x B over the same batch)")
    # Teacher is a fixed target: detach even if the caller's tensor carries a graph.
    target = F.softmax(teacher_sim.detach().to(student_sim.dtype) * teacher_scale, dim=1)
    return F.kl_div(F.log_softmax(student_sim * scale, dim=1), target, reduction="batchmean")


class CSALoss(nn.Module):
    """Cross-modal soft-label alignment: image->text rows follow the teacher's image-image
    distribution, text->image rows the teacher's text-text one. One tau for both directions
    (cusa.yaml ``use_same_tau: True``), learnable, clamped to [0.10, 0.99] as there."""

    def __init__(self, tau: float = 0.45, learnable: bool = True, min_tau: float = 0.10,
                 max_tau: float = 0.99, teacher_tau: float = 1.0):
        super().__init__()
        self.tau = Temperature(tau, learnable, min_tau, max_tau)
        self.teacher_tau = Temperature(teacher_tau, False, teacher_tau, teacher_tau)

    def get_config_dict(self) -> dict[str, float | bool]:
        return {**self.tau.get_config_dict(), "teacher_tau": self.teacher_tau.initial_tau}

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor,
                teacher_image_sim: torch.Tensor, teacher_text_sim: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) of paired images/captions; teacher sims (B, B) of the same batch."""
        sim = _cos(image_emb, text_emb)
        scale, t_scale = self.tau(), self.teacher_tau()
        return 0.5 * (_kl(sim, scale, teacher_image_sim, t_scale)
                      + _kl(sim.T, scale, teacher_text_sim, t_scale))


class USALoss(nn.Module):
    """Uni-modal soft-label alignment on image-image and text-text similarities.

    Takes the uni-modal embeddings (in CUSA: separate LayerNorm+Linear heads on the backbone
    features, not the cross-modal ones). Separate taus per modality (``use_same_tau: False``),
    learnable, clamped to [0.10, 1.00] as in cusa.yaml."""

    def __init__(self, tau: float = 0.45, learnable: bool = True, min_tau: float = 0.10,
                 max_tau: float = 1.00, teacher_tau: float = 1.0):
        super().__init__()
        self.image_tau = Temperature(tau, learnable, min_tau, max_tau)
        self.text_tau = Temperature(tau, learnable, min_tau, max_tau)
        self.teacher_tau = Temperature(teacher_tau, False, teacher_tau, teacher_tau)

    def get_config_dict(self) -> dict[str, float | bool]:
        return {**self.image_tau.get_config_dict(), "teacher_tau": self.teacher_tau.initial_tau}

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor,
                teacher_image_sim: torch.Tensor, teacher_text_sim: torch.Tensor) -> torch.Tensor:
        t_scale = self.teacher_tau()
        return 0.5 * (_kl(_cos(image_emb, image_emb), self.image_tau(), teacher_image_sim, t_scale)
                      + _kl(_cos(text_emb, text_emb), self.text_tau(), teacher_text_sim, t_scale))


class CUSALoss(nn.Module):
    """csa_weight * CSA + usa_weight * USA; the caller adds the contrastive (InfoNCE) term."""

    def __init__(self, csa_weight: float = CSA_WEIGHT, usa_weight: float = USA_WEIGHT,
                 csa: CSALoss | None = None, usa: USALoss | None = None):
        super().__init__()
        self.csa_weight, self.usa_weight = csa_weight, usa_weight
        self.csa = csa if csa is not None else CSALoss()
        self.usa = usa if usa is not None else USALoss()

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor,
                uni_image_emb: torch.Tensor, uni_text_emb: torch.Tensor,
                teacher_image_sim: torch.Tensor, teacher_text_sim: torch.Tensor) -> torch.Tensor:
        return (self.csa_weight * self.csa(image_emb, text_emb, teacher_image_sim, teacher_text_sim)
                + self.usa_weight * self.usa(uni_image_emb, uni_text_emb, teacher_image_sim,
                                             teacher_text_sim))
