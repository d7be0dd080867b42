"""One rule for item ids, wherever one comes from: an HTTP upload, a URL, a CLI argument.

An id is a '/'-separated relative path. `normal_item_id` gives the one spelling an id is
stored and looked up under (`./a.png` and `a//./a.png` are `a.png`), or refuses it: control
characters (a trailing newline included), absolute paths and `..` never name an item.
`new_item_id` is stricter, for ids a client chooses when adding an item; `file_item_id` is
the rule for ids made from file paths: a file whose relative path is not already its normal
spelling (a newline or tab in its name, a leading space) could never be looked up or removed,
so it is not indexed.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

from crossmodal.errors import BadInputError

MAX_NEW_ID_CHARS = 200
# Ids a client may choose: letters, digits, '.', '-', '_' in parts; no caption marker '#'.
_NEW_ID = re.compile(r"[\w.\-]+(/[\w.\-]+)*")
_NEW_ID_RULE = (f"an item id is 1-{MAX_NEW_ID_CHARS} letters, digits, '.', '-', '_' in "
                "'/'-separated parts, e.g. 'holiday/beach-01.jpg'")


def normal_item_id(raw: str) -> str:
    """The normal spelling of item id `raw` (surrounding whitespace dropped, `.` parts and
    repeated '/' removed); BadInputError if it cannot name an item."""
    item_id = raw.strip()
    if any(unicodedata.category(c) == "Cc" for c in item_id):
        raise BadInputError(f"item id {raw!r} contains a control character: remove it")
    if not item_id or item_id.startswith("/") or ".." in item_id.split("/"):
        raise BadInputError(f"item id {raw!r} is not a relative path inside the index "
                            "(no leading '/', no '..')")
    item_id = posixpath.normpath(item_id)
    if item_id == ".":
        raise BadInputError(f"item id {raw!r} names no item")
    return item_id


def new_item_id(raw: str) -> str:
    """`raw` in its normal spelling if a client may add an item under it, else BadInputError."""
    try:
        item_id = normal_item_id(raw)
    except BadInputError as exc:
        raise BadInputError(f"{exc}; {_NEW_ID_RULE}") from None
    if len(item_id) > MAX_NEW_ID_CHARS or not _NEW_ID.fullmatch(item_id):
        raise BadInputError(_NEW_ID_RULE)
    return item_id


def file_item_id(relative: str) -> str:
    """The id of a file at `relative` ('/'-separated, under the folder indexed), or
    BadInputError saying why no id can name it (the caller skips the file)."""
    try:
        item_id = normal_item_id(relative)
    except BadInputError as exc:
        raise BadInputError(f"its name cannot be an item id ({exc}): rename the file") from None
    if item_id != relative:
        raise BadInputError(f"its name cannot be an item id: it would be looked up as "
                            f"{item_id!r} (no spaces at either end): rename the file")
    return item_id


def normal_query_id(raw: str) -> str:
    """An item id or `ITEM#K` (its K-th caption), with the item part in its normal spelling."""
    item, marker, caption = raw.strip().rpartition("#")
    if marker and caption.isdigit():
        return f"{normal_item_id(item)}#{caption}"
    return normal_item_id(raw)
