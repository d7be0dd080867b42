"""Which index folder a Milvus collection belongs to, and whether a folder is behind it.

An index folder whose collections live on a Milvus server names them; `cp -r` of the folder
makes a second folder naming the same collections. Each collection records, as properties,
the folder that owns it (`crossmodal.folder`, its real path) and the generation that folder
last committed (`crossmodal.generation`, set right after the manifest). A copy may not write
(that would change the original too); once the original commits, the copy's row list no
longer matches the collection (removed rows are gone, new ones unnamed), so it may not read
either: it is told it is a stale copy, in one line, instead of answering wrongly.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossmodal.errors import IndexCorruptError, IndexMismatchError

OWNER_PROPERTY = "crossmodal.folder"
GENERATION_PROPERTY = "crossmodal.generation"


def generation_of(stem: str) -> int | None:
    """The generation a store's file stem names (`images.000007` -> 7; see generations)."""
    number = stem.rpartition(".")[2]
    return int(number) if number.isdigit() else None


def names_collection(folder: str, collection: str) -> bool:
    """Whether the index at `folder` still uses `collection` (its base name + _role)."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    base = manifest.get("store", {}).get("collection")
    return bool(base) and collection.rsplit("_", 1)[0] == base


def copy_error(folder: str, properties: dict, collection: str, uri: str
               ) -> IndexMismatchError | None:
    """The error for a write from `folder` to a collection another live folder owns."""
    recorded = properties.get(OWNER_PROPERTY)
    if not recorded or recorded == folder or not names_collection(recorded, collection):
        return None
    return IndexMismatchError(
        f"{folder} is a copy of {recorded}: both use Milvus collection '{collection}' at "
        f"{uri}, so writing here would change the original too. Search the copy as it is, "
        "or build a separate index with `crossmodal index DIR --into NEW_FOLDER --store "
        "milvus:URI`")


def stale_error(folder: str, generation: int, properties: dict, collection: str, uri: str
                ) -> IndexCorruptError | None:
    """The error for a read from `folder` (holding `generation`) of a collection that
    another folder has committed to since: its rows no longer match this folder's list.
    The owner itself is never stale here (its readers follow its manifest)."""
    recorded = properties.get(GENERATION_PROPERTY)
    owner = properties.get(OWNER_PROPERTY)
    if recorded is None or owner == folder or int(recorded) <= generation:
        return None
    return IndexCorruptError(
        f"{folder} is a stale copy of {owner}: Milvus collection '{collection}' at {uri} has "
        f"moved on (generation {recorded} there, {generation} here), so this folder's list "
        f"of rows no longer matches it. Search {owner} instead, or copy it again")


def drop_collections(client, collections: list[str], owner: str | None) -> list[str]:  # noqa: ANN001 - a milvus_store.GuardedClient
    """Drop these collections through `client`, except those another index folder owns
    (`owner` is a copy of it); returns the ones kept."""
    kept = []
    for name in collections:
        if not client.has_collection(name):
            continue
        recorded = client.describe_collection(name).get("properties", {}).get(OWNER_PROPERTY)
        if owner and recorded and recorded != owner and names_collection(recorded, name):
            kept.append(name)
        else:
            client.drop_collection(name)
    return kept
