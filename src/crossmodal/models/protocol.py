"""The encoder protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image becomes a tensor: resize the short side, centre-crop, normalise."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "shortest_edge"  # or "squash" (resize both sides to `size`)
    interpolation: str = "bicubic"

    def as_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class Encoder(Protocol):
    """A dual encoder: images and texts into one space of `dim` L2-normalised float32 rows."""

    model_id: str
    dim: int
    context_length: int
    preprocessing: ImagePreprocessing

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts (specials included), to report captions longer than the context."""
        ...

    @property
    def fingerprint(self) -> str:
        """Changes whenever the vectors would change (weights, preprocessing)."""
        ...
