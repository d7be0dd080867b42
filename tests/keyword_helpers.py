"""A small photo folder whose names and captions hold what the fake encoder cannot read."""

from __future__ import annotations

from pathlib import Path

from tests.image_helpers import write_image

TARGET = "camera/IMG_2043.jpg"


def write_shop_folder(root: Path) -> Path:
    """Dark photos, and one bright one (TARGET) named IMG_2043 with the captions "label
    XJ-9000 on a bottle" and "星河牌矿泉水": the fake encoder knows only colour words, so a
    bright photo scores lowest for any other text, and vector search ranks it last."""
    for n, colour in enumerate([(60, 20, 20), (20, 60, 20), (20, 20, 60), (40, 40, 40)]):
        write_image(root / f"dark{n}.png", colour)
        (root / f"dark{n}.txt").write_text(f"a dark shelf number {n}\n", encoding="utf-8")
    write_image(root / TARGET, (250, 250, 240))
    (root / TARGET).with_suffix(".txt").write_text("label XJ-9000 on a bottle\n星河牌矿泉水\n",
                                                   encoding="utf-8")
    return root
