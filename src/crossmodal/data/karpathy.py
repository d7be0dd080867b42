"""Karpathy split JSON: `dataset_flickr8k.json`, `dataset_flickr30k.json`, `dataset_coco.json`.

    {"dataset": "coco",                                  (optional; names the result)
     "images": [
        {"filename": "COCO_val2014_000000391895.jpg",    (required, string)
         "filepath": "val2014",                          (optional; COCO only)
         "split": "test",                                (required: train|val|test|restval)
         "sentences": [{"raw": "A man riding ...",       (required, string)
                        "sentid": 770337, ...}, ...],    (optional, integer or string)
         "cocoid": 391895, "imgid": 0, ...}, ...]}

The image file is IMAGE_ROOT/filepath/filename (IMAGE_ROOT/filename without filepath).
Image ids are `cocoid` where given (so they match COCO annotation ids), else the file name
without extension (so Flickr ids match Flickr8K-CN's); text ids are `sentid` (else ID#K).
`split` picks one split or several joined by '+', e.g. "train+restval" for the usual COCO
training set (restval is the 30K of COCO val2014 outside Karpathy's val/test).
An entry whose file is missing, or with no non-empty sentence, is skipped and recorded.
"""

from __future__ import annotations

from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.parsing import Builder, expect_object, get, json_list, local_path, read_json
from crossmodal.errors import BadInputError

SPLITS = ("train", "val", "test", "restval")


def parse_split(split: str) -> set[str]:
    wanted = {part.strip() for part in split.split("+")}
    unknown = sorted(wanted - set(SPLITS))
    if unknown:
        raise BadInputError(f"unknown Karpathy split {', '.join(unknown)} in '{split}' "
                            f"(splits: {', '.join(SPLITS)}; join several with '+')")
    return wanted


def load_karpathy(json_path: str | Path, image_root: str | Path, split: str = "test"
                  ) -> RetrievalDataset:
    json_path = Path(json_path)
    root = Path(image_root).resolve()  # absolute paths: feature caches key on them
    wanted = parse_split(split)
    data = read_json(json_path, "Karpathy split file")
    entries = json_list(data, json_path, "images")
    dataset = data.get("dataset") if isinstance(data.get("dataset"), str) else json_path.stem
    build = Builder(f"karpathy/{dataset}/{split}")
    for number, entry in enumerate(entries):
        where = f"{json_path}: images[{number}]"
        entry = expect_object(entry, where, "'filename', 'split' and 'sentences'")
        filename = get(entry, "filename", (str,), where)
        folder = get(entry, "filepath", (str,), where, optional=True)
        if get(entry, "split", (str,), where) not in wanted:
            continue
        sentences = get(entry, "sentences", (list,), where)
        cocoid = get(entry, "cocoid", (int, str), where, optional=True)
        image_id = str(cocoid) if cocoid is not None else Path(filename).stem
        texts = []
        for k, sentence in enumerate(sentences):
            at = f"{where}.sentences[{k}]"
            sentence = expect_object(sentence, at, "'raw'")
            raw = get(sentence, "raw", (str,), at)
            sentid = get(sentence, "sentid", (int, str), at, optional=True)
            text = build.caption(raw, at)
            if text:
                texts.append((text, f"{image_id}#{k}" if sentid is None else str(sentid)))
        if not texts:
            build.skip(where, "no captions")
            continue
        row = build.image(image_id, local_path(root, folder or "", filename), where)
        if row is not None:
            for text, text_id in texts:
                build.data.add_text(text, row, text_id)
    return build.data
