"""Test images written to disk (solid colours: cheap, and easy to tell apart)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def write_image(path: Path, colour: tuple[int, int, int], size=(32, 24), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path
