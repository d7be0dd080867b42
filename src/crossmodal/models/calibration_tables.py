"""Per-model calibration tables shipped beside the models (min-score cut-offs, duplicate
thresholds): one JSON file each, model id -> entry, every entry naming the fingerprint of the
weights it was calibrated with, so other weights never get another model's numbers."""

from __future__ import annotations

import json
from pathlib import Path

from crossmodal.errors import BadInputError
from crossmodal.storage import atomic_write


def read_table(path: Path) -> dict[str, dict]:
    """Model id -> entry; empty when the file is missing."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def checked_entry(table: dict[str, dict], model_id: str, fingerprint: str | None,
                  missing: str, stale: str) -> dict:
    """`model_id`'s entry; BadInputError(`missing`) without one, BadInputError(`stale`,
    formatted with `theirs` and `now`) when it was made with other weights."""
    entry = table.get(model_id)
    if entry is None:
        raise BadInputError(missing)
    if fingerprint is not None and entry["fingerprint"] != fingerprint:
        raise BadInputError(stale.format(theirs=entry["fingerprint"], now=fingerprint))
    return entry


def write_table(path: Path, table: dict[str, dict]) -> Path:
    """The table, sorted by model id, written beside and renamed into place."""
    text = json.dumps(dict(sorted(table.items())), indent=1, ensure_ascii=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return path
