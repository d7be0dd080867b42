"""Text inside photos (signs, menus, labels, screenshots), read with RapidOCR.

The `ocr` extra installs `rapidocr`, whose wheel carries its detection, direction and
recognition models (PP-OCR, Chinese and English in one recognition model) and runs them with
ONNX Runtime: nothing is downloaded, so it works offline. What a photo says becomes captions
of source "ocr" on its item (crossmodal.collection.ocr_ingest); a photo in which nothing is
read gets none.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from crossmodal.errors import BadInputError

OCR_SOURCE = "ocr"  # the caption source of recognised text
FILE_SOURCE = "file"  # captions from sidecar or caption files (what an item without sources has)
INSTALL_HINT = "pip install 'crossmodal[ocr]'"
# Lines read with less confidence than this are mostly texture taken for letters (grass,
# brickwork, a striped shirt) in real photos.
MIN_CONFIDENCE = 0.6
# Long text (a menu, a screenshot) is cut into captions of about this many characters, at
# line ends, so that each fits a text encoder's context.
CAPTION_CHARS = 200


def ocr_available() -> bool:
    """Whether the `ocr` extra is installed (without loading its models)."""
    from importlib.util import find_spec

    return find_spec("rapidocr") is not None


def require_ocr() -> None:
    """One clear line when --ocr is asked for without the extra."""
    if not ocr_available():
        raise BadInputError(f"--ocr needs the OCR models: {INSTALL_HINT}")


class TextReader:
    """RapidOCR's engine, loaded once; `read` is safe to call from several threads (one at a
    time: the ONNX sessions are not shared concurrently)."""

    def __init__(self, min_confidence: float = MIN_CONFIDENCE, threads: int | None = None):
        require_ocr()
        from rapidocr import RapidOCR

        params: dict = {"Global.log_level": "critical", "Global.text_score": min_confidence}
        if threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        self._engine = RapidOCR(params=params)
        self._lock = threading.Lock()

    def lines(self, image: Image.Image | str | Path) -> list[str]:
        """The lines of text read in `image`, top to bottom; [] when it shows none."""
        if isinstance(image, Image.Image):
            image = image.convert("RGB")
        with self._lock:
            result = self._engine(image)
        texts = getattr(result, "txts", None) or ()
        return [line for line in (" ".join(str(t).split()) for t in texts) if line]

    def captions(self, image: Image.Image | str | Path) -> list[str]:
        """What `image` says as captions (see `join_lines`)."""
        return join_lines(self.lines(image))


def join_lines(lines: list[str], limit: int = CAPTION_CHARS) -> list[str]:
    """Lines joined by spaces into captions of at most about `limit` characters (a line longer
    than that is a caption of its own): a sign is one caption, a menu a few."""
    captions: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > limit:
            captions.append(current)
            current = ""
        current = f"{current} {line}" if current else line
    if current:
        captions.append(current)
    return captions
