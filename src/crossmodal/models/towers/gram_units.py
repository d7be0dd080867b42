"""The units and grams of a text for the gram bag (crossmodal.models.towers.grams), and the
bag's inference as plain numpy: the ONNX Runtime path embeds a query without PyTorch."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from crossmodal.errors import missing_dependency

UNITS = ("words", "chars", "jieba")
_WORD = re.compile(r"[^\W_]+")
# "chars": each CJK character is a unit, a run of Latin letters or digits is one word
_CHAR = re.compile(r"[a-z0-9]+|[^\W_a-z0-9]")


@lru_cache(maxsize=1)
def _jieba():
    """PyPI jieba (its dictionary included; extra `multilingual`), loaded once, quietly."""
    try:
        import jieba
    except ImportError as exc:
        raise missing_dependency("jieba", "multilingual") from exc
    jieba.setLogLevel(logging.WARNING)
    return jieba


def units_of(text: str, unit: str) -> list[str]:
    """Lower-cased words, characters (Chinese) or jieba's Chinese words; spaces and
    punctuation dropped."""
    if unit == "jieba":
        return [w for w in _jieba().lcut(text.lower()) if _WORD.fullmatch(w)]
    return (_WORD if unit == "words" else _CHAR).findall(text.lower())


def grams_of(text: str, unit: str) -> list[str]:
    units = units_of(text, unit)
    return units + [f"{a} {b}" for a, b in zip(units, units[1:], strict=False)]


class GramTable:
    """A trained GramBag's table without torch: the mean of the vectors of a text's known
    grams, zeros for a text with none (as GramBag.forward in eval mode)."""

    def __init__(self, table: np.ndarray, vocab: list[str], unit: str):
        self.table, self.unit = table.astype(np.float32, copy=False), unit
        self.vocab = {gram: i for i, gram in enumerate(vocab)}

    @classmethod
    def load(cls, path: Path) -> GramTable:
        """A table saved by GramBag.save."""
        from safetensors import safe_open

        with safe_open(str(path), "np") as weights:
            metadata, table = weights.metadata() or {}, weights.get_tensor("table")
        vocab = json.loads(metadata["grams_vocab"])
        return cls(table[: len(vocab)], vocab, metadata.get("unit", "words"))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.table.shape[1]), np.float32)
        for row, text in enumerate(texts):
            known = [self.vocab[g] for g in grams_of(text, self.unit) if g in self.vocab]
            if known:
                out[row] = self.table[known].mean(0)
        return out
