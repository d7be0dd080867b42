"""COCO captions annotation JSON (`captions_train2014.json`, `captions_val2017.json`, ...).

    {"images": [{"id": 391895,                           (required, integer or string)
                 "file_name": "COCO_val2014_000000391895.jpg", ...}, ...],   (required)
     "annotations": [{"image_id": 391895,                (required, an id from "images")
                      "caption": "A man with a red helmet ...",              (required)
                      "id": 770337}, ...]}               (optional, integer or string)

The image file is IMAGE_ROOT/file_name. Image ids are the COCO ids as strings, text ids the
annotation ids (else ID#K). Images keep the order of "images"; the texts come image by
image, each image's in annotation order.
An image whose file is missing or that has no non-empty caption, and an annotation naming an
image id absent from "images", are skipped and recorded; a file listed twice is one row.
"""

from __future__ import annotations

from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.parsing import Builder, expect_object, get, json_list, local_path, read_json
from crossmodal.errors import BadInputError


def load_coco_captions(annotation_json: str | Path, image_root: str | Path
                       ) -> RetrievalDataset:
    path = Path(annotation_json)
    root = Path(image_root).resolve()  # absolute paths: feature caches key on them
    data = read_json(path, "COCO annotation file")
    images = json_list(data, path, "images")
    annotations = json_list(data, path, "annotations")
    build = Builder(f"coco/{path.stem}")

    files: dict[str, tuple[str, str]] = {}  # image id -> (file name, where listed)
    for number, image in enumerate(images):
        where = f"{path}: images[{number}]"
        image = expect_object(image, where, "'id' and 'file_name'")
        image_id = str(get(image, "id", (int, str), where))
        file_name = get(image, "file_name", (str,), where)
        if image_id in files and files[image_id][0] != file_name:
            raise BadInputError(f"{where}: image id {image_id} is also {files[image_id][1]} "
                                f"with another file_name ({files[image_id][0]!r})")
        files.setdefault(image_id, (file_name, where))

    captions: dict[str, list[tuple[str, str]]] = {image_id: [] for image_id in files}
    for number, annotation in enumerate(annotations):
        where = f"{path}: annotations[{number}]"
        annotation = expect_object(annotation, where, "'image_id' and 'caption'")
        image_id = str(get(annotation, "image_id", (int, str), where))
        raw = get(annotation, "caption", (str,), where)
        text_id = get(annotation, "id", (int, str), where, optional=True)
        if image_id not in files:
            build.skip(where, f"image id {image_id} is not in 'images'")
            continue
        text = build.caption(raw, where)
        if text:
            k = len(captions[image_id])
            text_id = f"{image_id}#{k}" if text_id is None else str(text_id)
            captions[image_id].append((text, text_id))

    for image_id, (file_name, where) in files.items():
        if not captions[image_id]:
            build.skip(where, "no captions")
            continue
        row = build.image(image_id, local_path(root, file_name), where)
        if row is not None:
            for text, text_id in captions[image_id]:
                build.data.add_text(text, row, text_id)
    return build.data
