"""The one in-memory form every dataset reader returns: images, texts, and which match."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossmodal.errors import BadInputError
from crossmodal.paths import content_key

# An image is a file path, or its encoded bytes (e.g. base64 rows of a Chinese-CLIP TSV).
ImageSource = Path | bytes


@dataclass
class RetrievalDataset:
    """`text_images[t]` lists the image rows text t describes (usually one)."""

    name: str
    image_ids: list[str] = field(default_factory=list)
    images: list[ImageSource] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text_images: list[tuple[int, ...]] = field(default_factory=list)
    text_ids: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    def __len__(self) -> int:
        return len(self.image_ids)

    def add_image(self, image_id: str, source: ImageSource) -> int:
        self.image_ids.append(image_id)
        self.images.append(source)
        return len(self.image_ids) - 1

    def add_text(self, text: str, image_rows: tuple[int, ...] | int, text_id: str | None = None
                 ) -> None:
        rows = (image_rows,) if isinstance(image_rows, int) else tuple(image_rows)
        self.texts.append(text)
        self.text_images.append(rows)
        self.text_ids.append(text_id if text_id is not None else str(len(self.texts) - 1))

    @property
    def text_image(self) -> np.ndarray:
        """The first image of each text (training pairs one image with each caption)."""
        return np.array([rows[0] for rows in self.text_images], dtype=np.int64)

    def image_texts(self) -> list[list[int]]:
        """Texts describing each image: the positives of image->text queries."""
        out: list[list[int]] = [[] for _ in self.image_ids]
        for text, rows in enumerate(self.text_images):
            for row in rows:
                out[row].append(text)
        return out

    def restrict(self, image_rows: list[int]) -> tuple[list[int], list[tuple[int, ...]]]:
        """Texts that still have a positive among `image_rows`, and their positives renumbered
        to positions in `image_rows`."""
        remap = {old: new for new, old in enumerate(image_rows)}
        kept, positives = [], []
        for text, rows in enumerate(self.text_images):
            new_rows = tuple(remap[r] for r in rows if r in remap)
            if new_rows:
                kept.append(text)
                positives.append(new_rows)
        return kept, positives

    def subset(self, image_rows: list[int], name: str | None = None) -> RetrievalDataset:
        """The given images and the texts that describe any of them."""
        out = RetrievalDataset(name or self.name)
        for row in image_rows:
            out.add_image(self.image_ids[row], self.images[row])
        kept, positives = self.restrict(image_rows)
        for text, rows in zip(kept, positives, strict=True):
            out.add_text(self.texts[text], rows, self.text_ids[text])
        return out

    def sample(self, n: int, seed: int) -> RetrievalDataset:
        """`n` images drawn at random (numpy's default_rng(seed), without replacement, kept
        in their order), with their texts: NewsImages' 2,000 of 6,855, reproducibly."""
        if not 0 < n <= len(self):
            raise BadInputError(f"--sample {n}: choose 1 to {len(self)} images of {self.name}")
        rows = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return self.subset(rows.tolist(), f"{self.name}/sample{n}-seed{seed}")

    def image_keys(self) -> list[str]:
        """A stable string per image: its path, or the hash of its bytes."""
        return [str(s) if isinstance(s, Path) else hashlib.sha1(s).hexdigest()
                for s in self.images]

    def fingerprint(self) -> str:
        """Identifies the content (ids, images, texts), for caching embeddings of it."""
        return content_key([self.image_ids, self.image_keys(), self.texts])
