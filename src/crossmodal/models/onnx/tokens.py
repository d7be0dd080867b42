"""A saved Hugging Face fast tokenizer run by the `tokenizers` library alone.

Importing transformers costs ~1.5 s of CPU, most of a cold one-query `crossmodal search`;
the export's tokenizer folder holds tokenizer.json (what transformers' fast tokenizer runs)
and tokenizer_config.json (padding and truncation sides, the pad token), which is all a query
needs. Called as transformers' tokenizers are: the same ids, masks and type ids
(tests/models/test_onnx.py compares them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossmodal.errors import UnknownModelError


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> dict:
    """int64 numpy tokens padded to the longest text of the batch (not to the context): what
    an exported text graph takes, at export and at run time alike (a transformers tokenizer
    or a FastTokenizer)."""
    return dict(tokenizer(list(texts), padding="longest", truncation=True,
                          max_length=max_length, return_tensors="np"))


class FastTokenizer:
    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            config_file = folder / "tokenizer_config.json"
            config = json.loads(config_file.read_text(encoding="utf-8")) \
                if config_file.is_file() else {}
        except Exception as exc:  # noqa: BLE001 - tokenizers raises untyped errors for bad files
            raise UnknownModelError(f"cannot load the tokenizer in {folder}: {exc}") from exc
        pad = config.get("pad_token") or "[PAD]"
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
        self.pad_id = self._tokenizer.token_to_id(pad) or 0
        self.pad_type_id = int(config.get("pad_token_type_id", 0))
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")
        self._tokenizer.no_padding()

    def __call__(self, texts: Sequence[str], padding: bool | str = False,
                 truncation: bool = False, max_length: int | None = None,
                 return_tensors: str | None = None) -> dict:
        if truncation and max_length:
            self._tokenizer.enable_truncation(max_length, direction=self.truncation_side)
        else:
            self._tokenizer.no_truncation()
        encodings = self._tokenizer.encode_batch(list(texts))
        columns = {"input_ids": [e.ids for e in encodings],
                   "token_type_ids": [e.type_ids for e in encodings],
                   "attention_mask": [e.attention_mask for e in encodings]}
        if not padding:
            return columns
        width = max((len(row) for row in columns["input_ids"]), default=0)
        fill = {"input_ids": self.pad_id, "token_type_ids": self.pad_type_id,
                "attention_mask": 0}
        out = {}
        for name, rows in columns.items():
            array = np.full((len(rows), width), fill[name], np.int64)
            for i, row in enumerate(rows):
                if self.padding_side == "left":
                    array[i, width - len(row):] = row
                else:
                    array[i, :len(row)] = row
            out[name] = array
        return out
