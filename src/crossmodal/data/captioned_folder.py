"""A folder of photos with sidecar captions (`dog.jpg` + `dog.txt`, one caption a line), as
`crossmodal index` reads it: each photo is an image row, each caption line a text of it.
Photos without a caption are left out of the dataset and recorded in `skipped`."""

from __future__ import annotations

from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.files import collect_items
from crossmodal.errors import BadInputError


def load_captioned_folder(root: str | Path) -> RetrievalDataset:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BadInputError(f"not a folder: {root} (expected photos with sidecar captions)")
    report = collect_items([root])
    data = RetrievalDataset(f"folder:{root.name}")
    data.skipped.extend(report.skipped_files + report.skipped_captions)
    for item in report.items:
        if not item.captions:
            data.skipped.append((str(item.path), "no caption"))
            continue
        row = data.add_image(item.id, item.path)
        for k, caption in enumerate(item.captions):
            data.add_text(caption, row, f"{item.id}#{k}")
    return data
