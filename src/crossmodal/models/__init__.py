"""Dual encoders behind one protocol, named by id in one registry."""

from crossmodal.models.protocol import Encoder, ImagePreprocessing
from crossmodal.models.registry import available_models, load_encoder

__all__ = ["Encoder", "ImagePreprocessing", "available_models", "load_encoder"]
