"""Search modes compared: vector, keyword (BM25) and hybrid (reciprocal rank fusion, k = 60)
on Flickr8k val, English and Chinese, with the default model.

Every query goes through the library's own search (crossmodal.collection.hybrid.search) on a
real index built in a temporary folder from the val embeddings; R@K is the share of queries
whose first relevant hit is within the top K (in %), Rsum = R@1 + R@5 + R@10.

What the keyword index holds decides what is measured, and the query must never find its own
text there (that would leak the answer):

- text->image, names only: 1,000 val photos indexed with no captions, so the keyword index
  holds only their file names (Flickr8k's are numbers, e.g. 1000268201_693b08cb0e.jpg); the
  5,000 val captions query. A query names no file, so keyword finds nothing: this checks
  that hybrid costs nothing when keywords have nothing to say.
- text->image, one caption held: each photo is indexed with its caption 0 only (as if its
  owner had described it); captions 1-4 of each photo (4,000) query. A query's own text is
  never in the index; the keyword side sees a different person's description of the photo,
  the vector side the photo itself.
- text->text: the 5,000 val captions indexed (with their photos), each caption queries the
  captions; the query caption is left out of its own hits; the relevant hits are the 4 other
  captions of its photo.

The rule for the default mode, fixed before the first run: hybrid becomes the default if its
Rsum is at least vector's minus 1 point in every setting above (English and Chinese) and its
mean Rsum over them is higher than vector's; otherwise the default stays vector.

`measure_modes` is the reusable part: it takes any Collection, the queries and their relevant
hit ids (e.g. photos with rendered text, searched by that text).

    nice -n 15 python benchmarks/accuracy/hybrid_search.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, write_result
from crossmodal.collection.collection import Collection
from crossmodal.collection.hybrid import MODES, search
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.models.defaults import DEFAULT_MODEL
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parents[1] / "results"
KS = (1, 5, 10)
SETTINGS = ("t2i_names_only", "t2i_one_caption_held", "t2t")


def measure_modes(collection: Collection, queries: Sequence[str],
                  relevant: Sequence[set[str]], target: str = "images",
                  query_vectors: np.ndarray | None = None,
                  exclude: Sequence[str | None] | None = None,
                  modes: Sequence[str] = MODES) -> dict:
    """R@1/5/10 and Rsum per mode of text `queries` against `collection`; `relevant[i]` are
    the hit ids (item ids; ITEM#K for captions) that answer query i, `exclude[i]` a hit id
    that is no answer to it (the query's own caption). `query_vectors` default to the
    collection's encoder on `queries`."""
    if query_vectors is None:
        query_vectors = collection.encoder.encode_texts(list(queries))
    depth = max(KS)
    out = {}
    for mode in modes:
        first = np.full(len(queries), np.inf)
        for i, (text, wanted) in enumerate(zip(queries, relevant, strict=True)):
            skip = exclude[i] if exclude is not None else None
            hits = search(collection, text, query_vectors[i : i + 1], depth + 1, target, None,
                          None, mode)
            ids = [h.id for h in hits if h.id != skip][:depth]
            rank = next((r for r, hit_id in enumerate(ids, 1) if hit_id in wanted), None)
            if rank is not None:
                first[i] = rank
        recalls = {f"R@{k}": round(float(100 * np.mean(first <= k)), 2) for k in KS}
        out[mode] = {**recalls, "Rsum": round(sum(recalls.values()), 2)}
    return out


def build(folder: Path, encoder, items: list[dict], image_vectors: np.ndarray,  # noqa: ANN001
          text_vectors: np.ndarray) -> Collection:
    collection = Collection.create(folder, encoder=encoder)
    collection.add_vectors(items, image_vectors, text_vectors)
    return collection


def settings(encoder, data: str, language: str, work: Path) -> dict:  # noqa: ANN001
    dataset = load_flickr8k_cn(data, "val", language)
    embedded = embed_dataset(encoder, dataset, progress=False)
    names = [f"{image_id}.jpg" for image_id in dataset.image_ids]
    captions: list[list[int]] = [[] for _ in names]  # text rows of each photo, in order
    for row, images in enumerate(dataset.text_images):
        captions[images[0]].append(row)
    texts, images, text_vectors = dataset.texts, embedded.images, embedded.texts
    results = {}

    items = [{"id": name, "path": name, "captions": []} for name in names]
    col = build(work / f"{language}-names", encoder, items, images, text_vectors[:0])
    queries = list(range(len(texts)))
    print(f"{language}: measuring", flush=True)
    results["t2i_names_only"] = measure_modes(
        col, [texts[q] for q in queries], [{names[dataset.text_images[q][0]]} for q in queries],
        "images", text_vectors[queries])

    items = [{"id": name, "path": name, "captions": [texts[rows[0]]]}
             for name, rows in zip(names, captions, strict=True)]
    col = build(work / f"{language}-held", encoder, items, images,
                text_vectors[[rows[0] for rows in captions]])
    queries = [row for rows in captions for row in rows[1:]]
    results["t2i_one_caption_held"] = measure_modes(
        col, [texts[q] for q in queries], [{names[dataset.text_images[q][0]]} for q in queries],
        "images", text_vectors[queries])

    items = [{"id": name, "path": name, "captions": [texts[r] for r in rows]}
             for name, rows in zip(names, captions, strict=True)]
    order = [r for rows in captions for r in rows]
    col = build(work / f"{language}-t2t", encoder, items, images, text_vectors[order])
    caption_id = {row: f"{names[i]}#{k}" for i, rows in enumerate(captions)
                  for k, row in enumerate(rows)}
    results["t2t"] = measure_modes(
        col, [texts[q] for q in order],
        [{caption_id[r] for r in captions[dataset.text_images[q][0]] if r != q} for q in order],
        "texts", text_vectors[order], exclude=[caption_id[q] for q in order])
    return {"queries": {"t2i_names_only": len(texts), "t2i_one_caption_held": len(queries),
                        "t2t": len(order)}, "results": results}


def choose_default(table: dict) -> tuple[str, str]:
    """The rule stated in the module's docstring, applied to {language: {setting: modes}}."""
    pairs = [(modes["vector"]["Rsum"], modes["hybrid"]["Rsum"])
             for per_language in table.values() for modes in per_language.values()]
    never_worse = all(h >= v - 1.0 for v, h in pairs)
    better_on_average = np.mean([h for _, h in pairs]) > np.mean([v for v, _ in pairs])
    if never_worse and better_on_average:
        return "hybrid", "hybrid's Rsum is within 1 point of vector's everywhere and higher " \
                         "on average"
    why = "higher on average" if not better_on_average else "within 1 point everywhere"
    return "vector", f"hybrid's Rsum is not {why}"


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", default="/work/shared/data/flickr8k-cn")
    parser.add_argument("--languages", default="en,zh")
    args = parser.parse_args()

    encoder = load_encoder(args.model)
    table, queries = {}, {}
    with tempfile.TemporaryDirectory(prefix="hybrid-") as work:
        for language in args.languages.split(","):
            found = settings(encoder, args.data, language, Path(work))
            table[language], queries[language] = found["results"], found["queries"]
    default, why = choose_default(table)
    print(f"{args.model} on Flickr8k val: R@1 / R@5 / R@10 / Rsum by search mode")
    print(f"{'language':<8} {'setting':<22} {'mode':<8} {'R@1':>6} {'R@5':>6} {'R@10':>6} "
          f"{'Rsum':>7}")
    for language, per_setting in table.items():
        for setting, modes in per_setting.items():
            for mode, row in modes.items():
                print(f"{language:<8} {setting:<22} {mode:<8} {row['R@1']:>6} {row['R@5']:>6} "
                      f"{row['R@10']:>6} {row['Rsum']:>7}")
    print(f"default mode by the rule: {default} ({why})")
    payload = {"model": args.model, "data": "flickr8k-cn val", "rrf_k": 60,
               "queries": queries, "results": table, "default_mode": default,
               "default_reason": why}
    print("wrote", write_result(RESULTS / "hybrid_search.json", payload, envelope))


if __name__ == "__main__":
    main()
