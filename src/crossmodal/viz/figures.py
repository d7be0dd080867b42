"""What every picture shares: matplotlib on the Agg backend, PNG bytes, atomic saving, and the
small subset of image groups a picture shows."""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError, missing_dependency
from crossmodal.storage import atomic_write
from crossmodal.viz.pages import picture_page

# Families that carry CJK glyphs; matplotlib falls back to them glyph by glyph when installed.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC",
             "AR PL UMing CN")
CORRECT, WRONG = "#1a9850", "#d73027"  # green / red, readable on white and on photos


def require_plotting(projection: str | None = None) -> None:
    """Fail before any slow work when the `viz` extra (or UMAP) is not installed."""
    import importlib.util

    needed = [("matplotlib", "matplotlib", "viz"), ("sklearn", "scikit-learn", "viz")]
    if projection == "umap":
        needed.append(("umap", "umap-learn", None))
    for module, package, extra in needed:
        if importlib.util.find_spec(module) is None:
            raise missing_dependency(package, extra)


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (chosen here, not at import, so
    importing crossmodal never touches a user's backend)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise missing_dependency("matplotlib", "viz") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fallbacks = _cjk_fonts()
    if fallbacks and list(matplotlib.rcParams["font.family"]) == ["sans-serif"]:
        # Only over matplotlib's default, so a font the user chose stays theirs.
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", *fallbacks]
    return plt


@functools.cache
def _cjk_fonts() -> list[str]:
    """Installed CJK families, for Chinese captions. matplotlib's font list is cached on disk
    when it is first built, so a font installed since then is looked for and added here."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    known = {font.name for font in manager.ttflist}
    if not any(name in known for name in CJK_FONTS):
        for path in font_manager.findSystemFonts():
            if any(tag in Path(path).name.lower() for tag in ("cjk", "wqy", "simhei", "yahei")):
                with contextlib.suppress(Exception):  # an unreadable font file: skip it
                    manager.addfont(path)
        known = {font.name for font in manager.ttflist}
    return [name for name in CJK_FONTS if name in known]


def figure_png(figure: Any, dpi: int = 100, colours: int | None = 256) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open one alive).

    `colours`: a palette PNG of that many colours, about 3x smaller for figures full of
    photos (which would otherwise make an HTML report several MB); None keeps true colour.
    """
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    finally:
        plt.close(figure)
    for warning in caught:  # one line instead of one warning per missing character
        if "missing from font" not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if any("missing from font" in str(w.message) for w in caught):
        warnings.warn("some characters (e.g. Chinese) have no glyph in the installed fonts and "
                      "show as boxes: install a CJK font, e.g. `apt install fonts-noto-cjk` "
                      "or `fonts-wqy-microhei`", stacklevel=2)
    if colours is None:
        return buffer.getvalue()
    image = Image.open(buffer).convert("RGB")
    # Median-cut palette, then Floyd-Steinberg dithering: without it smooth heat-map overlays
    # and colour bars show bands.
    palette = image.quantize(colours, Image.Quantize.MEDIANCUT)
    image = _snap_near_white(image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def check_picture_path(path: Path) -> None:
    if Path(path).suffix.lower() not in (".png", ".html", ".htm"):
        raise BadInputError(f"{path}: pictures are written as .png or .html; change --out")


def _snap_near_white(image: Image.Image) -> Image.Image:
    """Pillow's palette remap may put the white page on a neighbouring light grey; entries
    that are all but white become white, so the page is not tinted."""
    entries = image.getpalette()
    for start in range(0, len(entries), 3):
        if min(entries[start: start + 3]) >= 248:
            entries[start: start + 3] = [255, 255, 255]
    image.putpalette(entries)
    return image


def save_picture(png: bytes, path: Path, title: str = "") -> Path:
    """Write a PNG, or (for a `.html` path) a self-contained page showing it; atomically."""
    path = Path(path)
    check_picture_path(path)
    if path.suffix.lower() == ".png":
        atomic_write(path, lambda handle: handle.write(png))
    else:
        page = picture_page(title or path.stem, png)
        atomic_write(path, lambda handle: handle.write(page), mode="w")
    return path


def sample_groups(dataset: RetrievalDataset, count: int, seed: int = 0) -> list[int]:
    """`count` image rows that have at least one caption, drawn reproducibly, in row order."""
    if count < 1:
        raise BadInputError(f"need at least one image group, got {count}")
    captioned = sorted({row for rows in dataset.text_images for row in rows})
    if not captioned:
        raise BadInputError(f"dataset {dataset.name} has no captioned images to show")
    if count >= len(captioned):
        return captioned
    rng = np.random.default_rng(seed)
    return sorted(int(r) for r in rng.choice(captioned, size=count, replace=False))


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"
