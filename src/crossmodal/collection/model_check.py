"""A collection's model side: the encoder it names, loaded on first use and checked against
what it holds, and the query vectors it makes.

One rule for index folders and Milvus collections: the model id and dimension must match,
and so must the fingerprint (weights and preprocessing); other weights are refused, never
mixed into one collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.errors import BadInputError, IndexMismatchError
from crossmodal.models.language import language_note
from crossmodal.models.long_text import encode_long_texts, parse_long_text
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import load_encoder


class ModelSide:
    """For a collection with a `manifest` (model, dim, model_fingerprint) and a `path`."""

    manifest: Any
    path: Any
    _encoder: Encoder | None
    # What to do about other weights, said at the end of the refusal.
    REBUILD_HINT = "rebuild it into a new folder with `crossmodal index`"

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            encoder = load_encoder(self.manifest.model)
            self._check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        m = self.manifest
        if encoder.model_id != m.model or encoder.dim != m.dim:
            raise IndexMismatchError(
                f"{self.path} holds {m.dim}-d vectors of '{m.model}'; the encoder given is "
                f"'{encoder.model_id}' ({encoder.dim}-d)")
        if encoder.fingerprint != m.model_fingerprint:
            raise IndexMismatchError(
                f"{self.path} was built with other weights or preprocessing of '{m.model}' "
                f"(fingerprint {m.model_fingerprint}, now {encoder.fingerprint}): "
                f"{self.REBUILD_HINT}")

    def text_query(self, text: str, long_text: str | None = None) -> np.ndarray:
        """The (1, dim) query vector of `text` (needs only the encoder, not the index);
        `long_text` says what to do with a text longer than the context (models.long_text)."""
        if not text or not text.strip():
            raise BadInputError("the query text is empty")
        return encode_long_texts(self.encoder, [text.strip()], parse_long_text(long_text))

    def image_query(self, image: str | Path | bytes | Image.Image) -> np.ndarray:
        """The (1, dim) query vector of an image, a path to one or its bytes."""
        if not isinstance(image, Image.Image):
            try:
                image = load_image(image)
            except ImageLoadError as exc:
                raise BadInputError(f"cannot use query image: {exc}") from exc
        return self.encoder.encode_images([image])

    def query_note(self, text: str) -> str | None:
        """A one-line note when `text` is confidently in a language the model does not
        read (a Chinese query to a towers:lite-en index), else None."""
        return language_note(self.manifest.model, tuple(getattr(self.encoder, "languages", ())),
                             text)
