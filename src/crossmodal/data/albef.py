"""ALBEF / BLIP retrieval JSON: a list of image-caption entries.

    [{"image": "flickr30k-images/1007129816.jpg",        (or "image_path"; required, string)
      "caption": "The man with pierced ears ...",         (string, or a list of strings)
      "image_id": "1007129816"},                          (optional, string or integer)
     ...]

Training files (`coco_train.json`, `flickr30k_train.json`) hold one entry per caption, so an
image recurs across entries; test files (`flickr30k_test.json`, `coco_test.json`) hold one entry
per image with a list of captions. Either way each image file is one image row and every
caption a text pointing to it. The file is IMAGE_ROOT/image (an absolute path is kept).
Image ids are `image_id` where given, else the image path as written; text ids are ID#K.
An entry whose file is missing, or with no non-empty caption, is skipped and recorded.
"""

from __future__ import annotations

from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.parsing import (
    Builder,
    expect_object,
    get,
    json_list,
    local_path,
    read_json,
    short,
)
from crossmodal.errors import BadInputError


def _captions(entry: dict, where: str) -> list[str]:
    caption = get(entry, "caption", (str, list), where)
    captions = [caption] if isinstance(caption, str) else caption
    for k, text in enumerate(captions):
        if not isinstance(text, str):
            raise BadInputError(f"{where}: expected 'caption' to be a string or a list of "
                                f"strings, got {short(text)} at position {k}")
    return captions


def load_albef(json_path: str | Path, image_root: str | Path) -> RetrievalDataset:
    json_path = Path(json_path)
    root = Path(image_root).resolve()  # absolute paths: feature caches key on them
    entries = json_list(read_json(json_path, "ALBEF annotation file"), json_path)
    build = Builder(f"albef/{json_path.stem}")
    counts: dict[int, int] = {}
    for number, entry in enumerate(entries):
        where = f"{json_path}: entry {number}"
        entry = expect_object(entry, where, "'image' and 'caption'")
        key = "image_path" if "image_path" in entry else "image"
        image = get(entry, key, (str,), where)
        raw_id = get(entry, "image_id", (str, int), where, optional=True)
        image_id = image if raw_id is None else str(raw_id)
        captions = _captions(entry, where)
        texts = [build.caption(text, where if len(captions) == 1 else f"{where} caption {k}")
                 for k, text in enumerate(captions)]
        texts = [text for text in texts if text]
        if not texts:
            if len(captions) != 1:  # a lone empty caption is already recorded
                build.skip(where, "no captions")
            continue
        row = build.image(image_id, local_path(root, image), where)
        if row is None:
            continue
        for text in texts:
            k = counts[row] = counts.get(row, 0) + 1
            build.data.add_text(text, row, f"{build.data.image_ids[row]}#{k - 1}")
    return build.data
