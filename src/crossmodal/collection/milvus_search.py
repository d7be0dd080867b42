"""Searching a MilvusCollection: Milvus runs the filter (its superset), each hit is checked
against the filter's own meaning (crossmodal.index.filters: the folder index's answers),
caption hits are joined to their item rows (a caption whose item is gone, or past its
caption count, is no answer), and Milvus is asked again for more while places stay empty.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from crossmodal.collection import milvus_schema as ms
from crossmodal.collection.collection import Hit
from crossmodal.index.filters import Filter

_MAX_LIMIT = 16_384  # Milvus's largest search limit


def search(col: Any, queries: np.ndarray, k: int, target: str,
           where: Filter | None, cutoff: float | None) -> list[list[Hit]]:
    role = "items" if target == "images" else "texts"
    expression = where.milvus_superset() if where is not None else ""
    fields = sorted(where.fields()) if where is not None else []
    output = ["item_id", *fields] + ([ms.ITEM_FIELD] if role == "items" else ["text", "caption"])
    answers: list[list[Hit]] = []
    for query in queries:
        fetch = min(max(k, 1) * (4 if where is not None else 1), _MAX_LIMIT)
        while True:
            rows = col._client.search(
                col.names[role], data=[query], limit=fetch, filter=expression,
                search_params=ms.search_params(col.manifest.index_type),
                output_fields=list(dict.fromkeys(output)), **col.clock.read_kwargs())[0]
            hits = _hits(col, rows, role, where)
            if len(hits) >= k or len(rows) < fetch or fetch >= _MAX_LIMIT:
                break
            fetch = min(fetch * 4, _MAX_LIMIT)
        if len(hits) < k and len(rows) == fetch and where is not None:
            # Past Milvus's largest limit, the filter's rows are named outright.
            keys = _matching_keys(col, role, expression, where)
            rows = col._client.search(
                col.names[role], data=[query], limit=min(max(k, 1), _MAX_LIMIT),
                filter=f"id in {json.dumps(keys, ensure_ascii=False)}",
                search_params=ms.search_params(col.manifest.index_type),
                output_fields=list(dict.fromkeys(output)), **col.clock.read_kwargs())[0] \
                if keys else []
            hits = _hits(col, rows, role, where)
        kept = [h for h in hits if cutoff is None or h.score >= cutoff][:k]
        for rank, hit in enumerate(kept, 1):
            hit.rank = rank
        answers.append(kept)
    return answers


def _matching_keys(col: Any, role: str, expression: str, where: Filter) -> list[str]:
    """Ids of the rows matching `where`, read through a query iterator."""
    rows = col._client.query_iterator(
        col.names[role], batch_size=4_096, filter=expression or 'id != ""',
        output_fields=["id", *sorted(where.fields())], **col.clock.read_kwargs())
    keys: list[str] = []
    try:
        while batch := rows.next():
            keys.extend(row["id"] for row in batch if where.matches(row))
    finally:
        rows.close()
    return keys


def _hits(col: Any, rows: list[dict], role: str,
          where: Filter | None) -> list[Hit]:
    rows = [row for row in rows if where is None or where.matches(row.get("entity", {}))]
    if role == "items":
        return [_image_hit(row) for row in rows]
    records = col.records([row["entity"]["item_id"] for row in rows])
    hits = []
    for row in rows:
        entity = row["entity"]
        record = records.get(entity["item_id"])
        k = int(entity.get("caption", -1))
        if record is None or not 0 <= k < len(record.get("captions", [])):
            continue  # the item is gone (or being written): its caption is no answer
        hits.append(Hit(0, float(row["distance"]), row["id"], "text", record["id"],
                        record.get("path", ""), text=entity.get("text"),
                        captions=list(record.get("captions", []))))
    return hits


def _image_hit(row: dict) -> Hit:
    record = row["entity"].get(ms.ITEM_FIELD) or {}
    return Hit(0, float(row["distance"]), row["id"], "image", row["id"],
               record.get("path", ""), captions=list(record.get("captions", [])))
