"""Shared set-up for the HTTP tests: a small colour index and an app over it."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from crossmodal.engine import Collection


def build_index(tmp_path: Path, colour_folder: Path, encoder) -> Path:
    path = tmp_path / "index"
    Collection.create(path, model="fake:colours", encoder=encoder).add_paths(
        [colour_folder], progress=False)
    return path


def png_bytes(colour: tuple[int, int, int], size=(20, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()
