"""Text read in photos, kept on their items as captions of source "ocr".

An item's "captions" list holds the captions from files first, then those read in the photo;
"caption_sources" (only on items that have text read in them) says where each came from,
"file" or "ocr", and each caption row's filter metadata carries it as `caption_source`
(crossmodal.index.metadata). "ocr": true marks an item whose photo was read, with or without
text found, so that indexing again with --ocr reads only what was not read yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from crossmodal.data.files import ItemSource
from crossmodal.data.images import load_image
from crossmodal.data.ocr import FILE_SOURCE, OCR_SOURCE

# A large JPEG decodes at a reduced scale down to about this side (the reader's detector
# works at up to 2000 px): small print stays legible, a 48 MP photo costs a fraction.
OCR_SIDE = 1024


class TextReading(Protocol):
    def captions(self, image) -> list[str]: ...


class ReadReport(Protocol):
    ocr_read: int
    ocr_found: int
    skipped_ocr: list[tuple[str, str]]


def caption_sources(item: dict) -> list[str]:
    """Where each of the item's captions came from ("file" or "ocr")."""
    return list(item.get("caption_sources") or [FILE_SOURCE] * len(item["captions"]))


def file_captions(item: dict) -> list[str]:
    """The item's captions from sidecar or caption files (what a re-index compares)."""
    return [caption for caption, source in zip(item["captions"], caption_sources(item),
                                               strict=True) if source == FILE_SOURCE]


def needs_ocr(item: dict, ocr: bool) -> bool:
    """Whether indexing with `ocr` has yet to read this item's photo."""
    return ocr and not item.get("ocr")


def with_text(meta: dict, read: list[str]) -> None:
    """Add what was read in the photo to the item `meta` (being indexed) as "ocr" captions."""
    meta["ocr"] = True
    if read:
        meta["caption_sources"] = [FILE_SOURCE] * len(meta["captions"]) + \
            [OCR_SOURCE] * len(read)
        meta["captions"] = meta["captions"] + read


def read_texts(reader: TextReading, batch: list[tuple[ItemSource, dict]],
               report: ReadReport, done: Callable[[], None] = lambda: None) -> None:
    """Read the text in each photo of `batch` (full size, not the encoder's thumbnail),
    calling `done` after each. A photo the reader fails on is indexed without text and
    reported; the run goes on."""
    for source, meta in batch:
        try:
            read = reader.captions(load_image(source.path, target_size=OCR_SIDE))
        except Exception as exc:  # noqa: BLE001 - one photo's failure is its reported skip
            report.skipped_ocr.append((str(source.path), f"cannot read text: {exc}"))
            continue
        finally:
            done()
        with_text(meta, read)
        report.ocr_read += 1
        report.ocr_found += bool(read)
