"""Losses on raw tensors: embeddings (and ids) in, a scalar out; no data loading inside."""

from crossmodal.losses.infonce import InfoNCELoss

__all__ = ["InfoNCELoss"]
