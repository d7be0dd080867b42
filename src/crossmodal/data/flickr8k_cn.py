"""Flickr8K-CN: `IMAGE.jpg#enc#K caption` / `IMAGE.jpg#zhc#K caption` and split id lists.

Folder layout (as in ../shared/data/flickr8k-cn):
    images/                     the photos
    flickr8k{train,val,test}.txt   image ids (no extension), one a line
    flickr8kenc.caption.txt     English captions, 5 per image
    flickr8kzhc.caption.txt     Chinese captions, 5 per image
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.parsing import read_text, text_lines
from crossmodal.errors import BadInputError

LANGUAGES = {"en": "enc", "zh": "zhc"}


def read_split_ids(root: Path, split: str) -> list[str]:
    path = Path(root) / f"flickr8k{split}.txt"
    if not path.is_file():
        raise BadInputError(f"split file not found: {path} (splits: train, val, test)")
    ids = [line.strip() for line in read_text(path, "split file").splitlines()]
    return [i for i in ids if i]


def read_captions(root: Path, language: str) -> dict[str, list[str]]:
    if language not in LANGUAGES:
        raise BadInputError(f"language must be one of {sorted(LANGUAGES)}, not '{language}'")
    tag = LANGUAGES[language]
    path = Path(root) / f"flickr8k{tag}.caption.txt"
    if not path.is_file():
        raise BadInputError(f"caption file not found: {path}")
    captions: dict[str, list[str]] = {}
    with contextlib.closing(text_lines(path, "caption file")) as numbered:
        for number, line in numbered:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, _, caption = line.partition(" ")
            image, sep, _ = key.partition(f"#{tag}#")
            if not sep:
                raise BadInputError(
                    f"{path}:{number}: expected 'IMAGE.jpg#{tag}#K caption', got {line[:60]!r}"
                )
            captions.setdefault(Path(image).stem, []).append(caption.strip())
    return captions


def load_flickr8k_cn(root: str | Path, split: str = "val", language: str = "en"
                     ) -> RetrievalDataset:
    """`language` is en, zh, or several joined by "+" ("zh+en": each photo with its Chinese
    and then its English captions, e.g. to train a multilingual text tower on both)."""
    root = Path(root).resolve()  # absolute paths: feature caches key on them
    per_language = [read_captions(root, lang) for lang in language.split("+")]
    data = RetrievalDataset(f"flickr8k-cn/{split}/{language}")
    for image_id in read_split_ids(root, split):
        path = root / "images" / f"{image_id}.jpg"
        texts = [c for captions in per_language for c in captions.get(image_id, []) if c]
        if not path.is_file() or not texts:
            data.skipped.append((image_id, "image file missing" if texts else "no captions"))
            continue
        row = data.add_image(image_id, path)
        for k, text in enumerate(texts):
            data.add_text(text, row, f"{image_id}#{k}")
    return data
