"""A deterministic fake encoder: colours in images and colour words in texts share a space."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from crossmodal.models.protocol import ImagePreprocessing

COLOURS = {"red": 0, "green": 1, "blue": 2}
DIM = 16


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    # Not models.preprocess's: that imports torch, which Ray test workers need not load.
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class FakeEncoder:
    def __init__(self, model_id: str = "fake:colours", salt: str = ""):
        self.model_id = model_id
        self.dim = DIM
        self.context_length = 8
        self.preprocessing = ImagePreprocessing(size=8, mean=(0.0,) * 3, std=(1.0,) * 3)
        self.fingerprint = hashlib.sha256(f"fake{salt}".encode()).hexdigest()[:16]
        self.images_seen = 0

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), DIM), np.float32)
        for row, image in enumerate(images):
            rgb = np.asarray(image.convert("RGB").resize((8, 8)), np.float32).mean((0, 1))
            out[row, :3] = rgb / 255.0
            out[row, 3] = 0.05  # keeps black images from being a zero vector
        self.images_seen += len(images)
        return l2_normalize(out)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                if word in COLOURS:
                    out[row, COLOURS[word]] += 1.0
                else:  # other words spread over the remaining dims
                    out[row, 4 + int(hashlib.md5(word.encode()).hexdigest(), 16) % (DIM - 4)] += 0.1
            out[row, 3] += 0.05
        return l2_normalize(out)

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]


def as_fake_backend(monkeypatch, encoder):  # noqa: ANN001, ANN201 - a fixture's body
    """Serve `encoder` for every `fake:` model id while a test runs (`yield from` it in a
    fixture); the registry's cache of loaded encoders is emptied before and after."""
    from crossmodal.models import registry

    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: encoder)
    registry.load_encoder.cache_clear()
    yield encoder
    registry.load_encoder.cache_clear()

