"""Photos with text in them, for the OCR tests: a Debian CJK font draws English and Chinese."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from crossmodal.data.ocr import ocr_available

CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


def cjk_font() -> Path | None:
    return next((Path(f) for f in CJK_FONTS if Path(f).is_file()), None)


def needs_real_ocr() -> Path:
    """The font path; the test is skipped without the font or the ocr extra."""
    if not ocr_available():
        pytest.skip("the ocr extra (rapidocr) is not installed")
    font = cjk_font()
    if font is None:
        pytest.skip("no CJK font: apt-get install fonts-noto-cjk")
    return font


def write_sign(path: Path, text: str, font: Path, background: tuple = (250, 250, 240),
               size: tuple[int, int] = (640, 360)) -> Path:
    """`text` in dark letters on a plain board."""
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).text((40, size[1] // 2 - 30), text, fill=(20, 20, 20),
                               font=ImageFont.truetype(str(font), 48))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=92)
    return path
