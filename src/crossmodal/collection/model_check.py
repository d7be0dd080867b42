"""The encoder a collection names, loaded on first use and checked against what it holds.

One rule for index folders and Milvus collections: the model id and dimension must match,
and so must the fingerprint (weights and preprocessing); other weights are refused, never
mixed into one collection.
"""

from __future__ import annotations

from typing import Any

from crossmodal.errors import IndexMismatchError
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import load_encoder


class ChecksItsEncoder:
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
