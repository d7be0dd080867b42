"""Losses on raw tensors: embeddings (and ids) in, a scalar out; no data loading inside."""

from crossmodal.losses.infonce import InfoNCELoss
from crossmodal.losses.instance import InstanceLoss
from crossmodal.losses.registry import LOSSES, build_loss
from crossmodal.losses.soft_label import (
    CSA_WEIGHT,
    USA_WEIGHT,
    CSALoss,
    CUSALoss,
    USALoss,
    teacher_similarity,
)
from crossmodal.losses.temperature import Temperature

__all__ = [
    "CSA_WEIGHT",
    "USA_WEIGHT",
    "CSALoss",
    "CUSALoss",
    "InfoNCELoss",
    "InstanceLoss",
    "LOSSES",
    "Temperature",
    "USALoss",
    "build_loss",
    "teacher_similarity",
]
