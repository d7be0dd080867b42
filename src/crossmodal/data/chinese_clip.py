"""Chinese-CLIP retrieval data (MUGE, Flickr30K-CN, COCO-CN as Chinese-CLIP ships them).

A folder per dataset holding, for each split (train, valid, test):
    {split}_texts.jsonl   one object a line, e.g.
                          {"text_id": 8428, "text": "托特包斜挎", "image_ids": [1076345, 517602]}
                          text_id: integer or string; text: string; image_ids: a list of
                          integers or strings, every one a positive of the text
    {split}_imgs.tsv      one image a line: IMAGE_ID<TAB>BASE64, the encoded image file in
                          base64 (Chinese-CLIP writes the URL-safe alphabet; both are read)

Images are kept as their encoded bytes, in TSV order, and every image of the TSV is a row,
texts or not (the TSV is the gallery texts are ranked against). A text naming an image that
is not in the TSV, with no image_ids, or with empty text is skipped and recorded.
An id repeated in the TSV is one row when the bytes agree, an error when they differ.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.parsing import (
    Builder,
    expect_object,
    get,
    iter_jsonl,
    require_file,
    short,
    text_lines,
)
from crossmodal.errors import BadInputError

_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _decode(payload: str, where: str) -> bytes:
    try:
        data = base64.b64decode(payload.encode("ascii").translate(_URLSAFE), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise BadInputError(f"{where}: expected a base64-encoded image after the tab "
                            f"({exc})") from exc
    if not data:
        raise BadInputError(f"{where}: expected a base64-encoded image, got nothing")
    return data


def read_image_tsv(path: Path, build: Builder) -> dict[str, int]:
    """Image id -> row, adding each image of the TSV to the dataset."""
    rows: dict[str, int] = {}
    lines: dict[str, int] = {}
    with contextlib.closing(text_lines(path, "image TSV")) as numbered:
        for number, line in numbered:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{path}:{number}"
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip():
                raise BadInputError(f"{where}: expected 'IMAGE_ID<TAB>BASE64', got "
                                    f"{len(fields)} field(s) starting {short(line[:40])}")
            image_id, image = fields[0].strip(), _decode(fields[1].strip(), where)
            if image_id in rows:
                if build.data.images[rows[image_id]] != image:
                    raise BadInputError(f"{where}: image id {image_id!r} repeats line "
                                        f"{lines[image_id]} with different image data")
                continue
            rows[image_id] = build.data.add_image(image_id, image)
            lines[image_id] = number
    return rows


def load_chinese_clip(folder: str | Path, split: str) -> RetrievalDataset:
    folder = Path(folder)
    texts_path = folder / f"{split}_texts.jsonl"
    images_path = folder / f"{split}_imgs.tsv"
    build = Builder(f"chinese-clip/{folder.name}/{split}")
    require_file(texts_path, f"Chinese-CLIP '{split}' texts")
    rows = read_image_tsv(images_path, build)
    for number, value in iter_jsonl(texts_path):
        where = f"{texts_path}:{number}"
        record = expect_object(value, where, "'text_id', 'text' and 'image_ids'")
        text_id = str(get(record, "text_id", (int, str), where))
        raw = get(record, "text", (str,), where)
        ids = get(record, "image_ids", (list,), where, optional=True) or []
        for image_id in ids:
            if isinstance(image_id, bool) or not isinstance(image_id, int | str):
                raise BadInputError(f"{where}: expected 'image_ids' to be a list of integers "
                                    f"or strings, got {short(image_id)} in it")
        text = build.caption(raw, where)
        if text is None:
            continue
        if not ids:
            build.skip(where, "no image_ids")
            continue
        absent = [str(i) for i in ids if str(i) not in rows]
        if absent:
            build.skip(where, f"image ids not in {images_path.name}: {', '.join(absent)}")
            continue
        build.data.add_text(text, tuple(dict.fromkeys(rows[str(i)] for i in ids)), text_id)
    return build.data
