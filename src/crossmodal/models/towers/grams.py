"""A learned bag of word (or character) unigrams and bigrams, added to the text head.

Frozen sentence encoders blur the exact words that tell one photo from the next ("two dogs"
vs "a dog", "红色" vs "白色"). A mean of learned gram vectors, trained with the heads on the
domain's captions, gives them back cheaply: on Flickr8k it adds ~18 Rsum to lite-en's heads.
The vocabulary is built from the training captions and saved with the head weights.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from crossmodal.errors import UnknownModelError
from crossmodal.models.towers.gram_units import (  # noqa: F401 - their old home
    UNITS,
    grams_of,
    units_of,
)


class GramBag(nn.Module):
    """Mean of the vectors of a text's known grams. A text without known grams (another
    language, an empty query) adds a zero vector: the sentence encoder's embedding alone."""

    def __init__(self, dim: int, unit: str = "words", min_count: int = 2, dropout: float = 0.1):
        super().__init__()
        if unit not in UNITS:
            raise UnknownModelError(f"grams unit must be one of {UNITS}, not {unit!r}")
        self.dim, self.unit, self.min_count, self.dropout = dim, unit, min_count, dropout
        self.vocab: dict[str, int] = {}
        self.table = nn.EmbeddingBag(1, dim, mode="mean")

    def set_vocab(self, grams: Sequence[str]) -> None:
        """A fresh table for this vocabulary (small random vectors, so training starts from
        the sentence encoder's embedding)."""
        self.vocab = {gram: i for i, gram in enumerate(grams)}
        padding = len(self.vocab)  # the last row: left out of means, so no-gram texts get 0
        self.table = nn.EmbeddingBag(padding + 1, self.dim, mode="mean", padding_idx=padding)
        nn.init.normal_(self.table.weight, std=0.01)
        with torch.no_grad():
            self.table.weight[padding].zero_()

    def vocab_json(self) -> str:
        return json.dumps(sorted(self.vocab, key=self.vocab.__getitem__), ensure_ascii=False)

    def save(self, path: Path) -> None:
        """The table alone, with its vocabulary and unit (what an ONNX export carries)."""
        from crossmodal.storage import atomic_save_safetensors

        atomic_save_safetensors(Path(path), {"table": self.table.weight},
                                {"grams_vocab": self.vocab_json(), "unit": self.unit})

    @classmethod
    def load(cls, path: Path) -> GramBag:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as weights:
            metadata, table = weights.metadata() or {}, weights.get_tensor("table")
        bag = cls(table.shape[1], metadata.get("unit", "words"), dropout=0.0)
        bag.set_vocab(json.loads(metadata["grams_vocab"]))
        with torch.no_grad():
            bag.table.weight.copy_(table)
        return bag.eval()

    def fit(self, texts: Sequence[str]) -> None:
        """The vocabulary: grams in at least `min_count` training texts, in sorted order."""
        counts = Counter(g for text in texts for g in set(grams_of(text, self.unit)))
        self.set_vocab(sorted(g for g, c in counts.items() if c >= self.min_count))

    def ids(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat gram ids and per-text offsets, as nn.EmbeddingBag takes them. In training mode
        each gram is dropped with probability `dropout` (a text keeps at least one)."""
        unknown = len(self.vocab)
        flat: list[int] = []
        offsets: list[int] = []
        for text in texts:
            known = [self.vocab[g] for g in grams_of(text, self.unit) if g in self.vocab]
            if self.training and self.dropout and len(known) > 1:
                keep = (torch.rand(len(known)) >= self.dropout).tolist()
                known = [i for i, k in zip(known, keep, strict=True) if k] or known[:1]
            offsets.append(len(flat))
            flat += known or [unknown]
        return torch.tensor(flat, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        if not self.vocab:
            raise UnknownModelError("the grams head has no vocabulary: train the heads, or "
                                    "load weights saved with one")
        ids, offsets = self.ids(texts)
        device = self.table.weight.device  # the GPU while heads train there
        return self.table(ids.to(device), offsets.to(device))
