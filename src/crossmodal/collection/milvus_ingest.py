"""Adding folders of files to a MilvusCollection: the folder collection's plan and embedding
(crossmodal.collection.ingest), with what is already there read from Milvus by id, and each
`commit_every` items written as soon as they are embedded (no lock: other writers go on).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossmodal.collection import ingest
from crossmodal.collection.ingest import AddReport, Embedded
from crossmodal.data.files import collect_items
from crossmodal.data.loader import iter_image_batches


class _Known:
    """What `ingest.plan` reads of a collection: the records held for the given ids."""

    def __init__(self, records: dict[str, dict]):
        self.items = list(records.values())
        self._row_of = {record["id"]: row for row, record in enumerate(self.items)}


def add_paths(col: Any, inputs: Sequence[str | Path],
              caption_files: Sequence[str | Path] = (), batch_size: int = 32,
              progress: bool = True, commit_every: int = 4096) -> AddReport:
    collected = collect_items(list(inputs), list(caption_files))
    report = AddReport(skipped_files=list(collected.skipped_files),
                       skipped_captions=list(collected.skipped_captions))
    encoder = col.encoder
    known = _Known(col.records([source.id for source in collected.items], strong=True))
    todo = ingest.plan(known, collected.items, report)  # type: ignore[arg-type]
    pending: list[Embedded] = []
    unreadable: set[str] = set()
    if todo:
        ingest.warm_up(encoder)
    bar = ingest.Progress(todo, progress)
    commit_every = max(1, min(commit_every, 256))  # written soon: others see it soon
    for positions, images, failures in iter_image_batches(
        [source.path for source, _ in todo], batch_size,
        target_size=encoder.preprocessing.size,
    ):
        for position, reason in failures:
            report.skipped_files.append((str(todo[position][0].path), reason))
            unreadable.add(todo[position][0].id)
        new = ingest.embed_or_skip(encoder, [todo[p] for p in positions], images, report,
                                   unreadable) if positions else []
        pending.extend(new)
        bar.update([todo[p][0] for p in positions + [f for f, _ in failures]],
                   new[0] if new else None)
        if sum(len(e.batch) for e in pending) >= commit_every:
            col.apply_embedded(pending, set(), report)
            pending = []
    bar.close()
    if pending or unreadable:
        col.apply_embedded(pending, unreadable, report)
    return report
