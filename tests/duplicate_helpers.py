"""A folder of photos with copies among them, for the duplicate tests (CLI, HTTP, library)."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from tests.image_helpers import write_image


def write_copies_folder(root: Path) -> Path:
    """A red photo and a resized PNG of it; a green photo and a byte copy of it with other
    captions; a blue photo alone."""
    write_image(root / "red.jpg", (250, 10, 10), size=(64, 48))
    (root / "small").mkdir()
    with Image.open(root / "red.jpg") as im:
        im.resize((24, 18)).save(root / "small" / "red.png")
    write_image(root / "green.png", (10, 250, 10))
    (root / "green.txt").write_text("a green field\n", encoding="utf-8")
    (root / "copy").mkdir()
    shutil.copyfile(root / "green.png", root / "copy" / "green.png")
    (root / "copy" / "green.txt").write_text("grass\n", encoding="utf-8")
    write_image(root / "blue.png", (10, 10, 250))
    return root
