"""Small datasets of every format, written for the reader tests."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

from tests.image_helpers import write_image

RED, GREEN, BLUE = (250, 10, 10), (10, 250, 10), (10, 10, 250)


def dump(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def lines(path: Path, *rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def karpathy_entry(filename, split, *raws, **extra):
    sentences = [{"raw": raw, "sentid": 10 * len(filename) + k, "tokens": []}
                 for k, raw in enumerate(raws)]
    return {"filename": filename, "split": split, "sentences": sentences, **extra}


def encoded(colour, urlsafe=True) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(buffer.getvalue()).decode("ascii")


def chinese_clip_folder(tmp_path: Path, texts: list[object], tsv: list[str] | None = None) -> Path:
    folder = tmp_path / "muge"
    lines(folder / "valid_imgs.tsv", *(tsv if tsv is not None else [
        f"101\t{encoded(RED)}", f"102\t{encoded(GREEN, urlsafe=False)}", f"103\t{encoded(BLUE)}",
        f"101\t{encoded(RED)}",  # repeated with the same bytes: one row
    ]))
    lines(folder / "valid_texts.jsonl",
          *(t if isinstance(t, str) else json.dumps(t, ensure_ascii=False) for t in texts))
    return folder


def flickr8k_cn_root(tmp_path: Path) -> Path:
    root = tmp_path / "flickr8k-cn"
    write_image(root / "images" / "100.jpg", RED)
    lines(root / "flickr8ktest.txt", "100")
    lines(root / "flickr8kval.txt", "100")
    lines(root / "flickr8kzhc.caption.txt", "100.jpg#zhc#0 红色方块", "100.jpg#zhc#1 红色")
    return root
