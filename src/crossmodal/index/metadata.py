"""The per-row metadata a store keeps for query-time filters, derived from an item.

Fields (all filterable): item_id; source (the item id: the path relative to the folder that was
indexed, e.g. "beach/dog.jpg"); folder ("beach"; "." at the top); name ("dog.jpg"); path (as
given to `crossmodal index`); modality ("image" or "text"); caption (the caption's number, texts
only); caption_source (texts only: "file", or "ocr" for text read in the photo); mtime
(seconds since 1970, int); date ("YYYY-MM-DD", UTC); what the photo's EXIF says, where it
says it (taken, camera, make, model, lat, lon, orientation, width, height: see
crossmodal.data.exif; an item indexed without them has none); plus the item's own "meta"
fields (strings, numbers, booleans) given through `Collection.add_vectors`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePosixPath

from crossmodal.data.exif import PHOTO_FIELDS
from crossmodal.errors import BadInputError

# Names the stores use for their own columns; metadata may not shadow them.
RESERVED = frozenset({"id", "vector"})
BUILT_IN = ("item_id", "source", "folder", "name", "path", "modality", "caption", "caption_source",
            "mtime", "date")


def item_metadata(item: dict, modality: str = "image", caption: int | None = None) -> dict:
    source = PurePosixPath(str(item["id"]))
    row: dict = {"item_id": item["id"], "source": item["id"], "folder": str(source.parent),
                 "name": source.name, "path": str(item.get("path", "")), "modality": modality}
    if caption is not None:
        row["caption"] = caption
        sources = item.get("caption_sources")
        row["caption_source"] = sources[caption] if sources else "file"
    if item.get("mtime_ns") is not None:
        seconds = int(item["mtime_ns"]) // 1_000_000_000
        row["mtime"] = seconds
        row["date"] = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d")
    # The photo's fields go first: an item's own "meta" of the same name is what it means.
    row.update({key: value for key, value in (item.get("photo") or {}).items()
                if key in PHOTO_FIELDS})
    for key, value in (item.get("meta") or {}).items():
        if key in RESERVED or key in BUILT_IN or not str(key).isidentifier():
            raise BadInputError(f"item {item['id']}: metadata field '{key}' is reserved or not "
                                "a plain name; rename it")
        if not isinstance(value, str | int | float | bool):
            raise BadInputError(f"item {item['id']}: metadata '{key}' must be a string, number "
                                f"or boolean, not {type(value).__name__}")
        row[key] = value
    return row
