"""Calibrate a relevance cut-off: the cosine above which a text->image hit is relevant.

On Flickr8k val (1,000 photos, 5 captions each) every caption is scored against every photo;
a (caption, photo) pair is relevant when the caption was written for the photo. For each
target precision P the threshold is the lowest score t such that, of all pairs scoring >= t,
a share P is relevant: the cut-off that keeps the most hits while P of what it keeps is
right. Also shown: the recall at t (share of relevant pairs kept), the share of captions with
at least one hit kept, and a 2-fold check (threshold chosen on half of the photos, precision
measured on the other half), which says how far the number carries to other photos.

Flickr8k marks one photo relevant per caption; a similar photo of another dog on grass
counts as wrong, so the precision here is a floor. It also depends on the gallery: among more
photos more wrong ones score high. The thresholds apply to this model's score scale only.

    python benchmarks/accuracy/min_score_calibration.py --model towers:lite-en --language en
    python benchmarks/accuracy/min_score_calibration.py --model towers:lite-zh --language zh \
        --write-package-data

A model that routes texts by language (fusion:bilingual) gets one table per query language:
an English query uses all four members, a Chinese one only the two that read Chinese, so the
two score on different scales. Its first language's table is also its default (queries in no
detected language, image queries).

    python benchmarks/accuracy/min_score_calibration.py --model fusion:bilingual --language en \
        --write-package-data
    python benchmarks/accuracy/min_score_calibration.py --model fusion:bilingual --language zh \
        --write-package-data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.models.registry import load_encoder
from crossmodal.models.score_thresholds import write_thresholds

RESULTS = Path(__file__).resolve().parents[1] / "results"
PRECISIONS = (0.9, 0.5)


def relevance_matrix(text_images: list[tuple[int, ...]], n_images: int) -> np.ndarray:
    relevant = np.zeros((len(text_images), n_images), bool)
    for text, rows in enumerate(text_images):
        relevant[text, list(rows)] = True
    return relevant


def threshold_at(scores: np.ndarray, relevant: np.ndarray, precision: float) -> float | None:
    """Lowest score t with precision(pairs >= t) >= `precision`; None if none reaches it.
    Tied scores are kept or cut together (identical captions score identically)."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    cumulative = np.cumsum(relevant[order]) / np.arange(1, len(order) + 1)
    group_end = np.append(ranked[1:] < ranked[:-1], True)  # last of its tie group
    ok = np.nonzero((cumulative >= precision) & group_end)[0]
    return float(ranked[ok[-1]]) if len(ok) else None


def measured(scores: np.ndarray, relevant: np.ndarray, t: float) -> dict:
    kept = scores >= t
    return {"precision": round(float(relevant[kept].mean()), 4) if kept.any() else None,
            "recall": round(float(relevant[kept].sum() / relevant.sum()), 4),
            "queries_with_a_hit": round(float(kept.any(axis=1).mean()), 4),
            "mean_hits_per_query": round(float(kept.sum(axis=1).mean()), 3)}


def curve(scores: np.ndarray, relevant: np.ndarray, cuts: np.ndarray) -> list[dict]:
    """Per cut-off: the pair view (as `measured`) and the top-1 view, what a person sees
    first: of the captions whose best photo scores >= t, the share whose best is its own."""
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(scores)), best]
    best_right = relevant[np.arange(len(scores)), best]
    rows = []
    for t in cuts:
        shown = best_score >= t
        rows.append({"threshold": round(float(t), 4), **measured(scores, relevant, t),
                     "top1_precision": round(float(best_right[shown].mean()), 4)
                     if shown.any() else None})
    return rows


def two_fold(scores: np.ndarray, relevant: np.ndarray, precision: float) -> list[dict]:
    """Threshold from one half of the photos (and their captions), measured on the other."""
    halves = [np.arange(scores.shape[1]) % 2 == h for h in (0, 1)]
    out = []
    for chosen, held in ((0, 1), (1, 0)):
        def part(h: int) -> tuple[np.ndarray, np.ndarray]:
            rows = relevant[:, halves[h]].any(axis=1)
            return scores[rows][:, halves[h]], relevant[rows][:, halves[h]]
        t = threshold_at(*[m.ravel() for m in part(chosen)], precision)
        if t is not None:
            out.append({"threshold": round(t, 4), **measured(*part(held), t)})
    return out


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="/work/shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en")
    parser.add_argument("--write-package-data", action="store_true",
                        help="store the thresholds in crossmodal/models/score_thresholds.json")
    args = parser.parse_args()

    dataset = load_flickr8k_cn(args.data, "val", args.language)
    encoder = load_encoder(args.model)
    embedded = embed_dataset(encoder, dataset, progress=False)
    scores = embedded.texts @ embedded.images.T
    relevant = relevance_matrix(dataset.text_images, len(dataset.images))
    rows = []
    for precision in PRECISIONS:
        t = threshold_at(scores.ravel(), relevant.ravel(), precision)
        if t is None:
            rows.append({"precision_target": precision, "threshold": None})
            continue
        rows.append({"precision_target": precision, "threshold": round(t, 4),
                     **measured(scores, relevant, t),
                     "two_fold": two_fold(scores, relevant, precision)})
    cuts = curve(scores, relevant, np.round(np.arange(0.2, 0.61, 0.05), 2))
    positives = scores[relevant]
    payload = {"model": args.model, "fingerprint": encoder.fingerprint,
               "data": f"flickr8k-cn val {args.language}", "images": len(dataset.images),
               "captions": len(dataset.texts),
               "relevant_score_quartiles": [round(float(q), 4) for q in
                                            np.quantile(positives, [0.25, 0.5, 0.75])],
               "other_score_p99": round(float(np.quantile(scores[~relevant], 0.99)), 4),
               "thresholds": rows, "curve": cuts}
    print(f"{args.model} on {payload['data']} ({payload['images']} photos, "
          f"{payload['captions']} captions)")
    print(f"{'precision':>9} {'threshold':>9} {'measured':>8} {'recall':>6} {'q with hit':>10} "
          f"{'hits/q':>6}  2-fold precision")
    for row in rows:
        if row["threshold"] is None:
            print(f"{row['precision_target']:>9} {'(never)':>9}")
            continue
        folds = ", ".join(f"{f['precision']}" for f in row["two_fold"])
        print(f"{row['precision_target']:>9} {row['threshold']:>9.4f} {row['precision']:>8} "
              f"{row['recall']:>6} {row['queries_with_a_hit']:>10} "
              f"{row['mean_hits_per_query']:>6}  {folds}")
    print(f"\n{'cut-off':>7} {'precision':>9} {'recall':>6} {'q with hit':>10} "
          f"{'hits/q':>6} {'top-1 precision':>15}")
    for row in cuts:
        print(f"{row['threshold']:>7.2f} {row['precision']!s:>9} {row['recall']:>6} "
              f"{row['queries_with_a_hit']:>10} {row['mean_hits_per_query']:>6} "
              f"{row['top1_precision']!s:>15}")
    name = args.model.replace(":", "_").replace("/", "_")
    print("wrote", write_result(RESULTS / f"min_score_{name}_{args.language}.json", payload,
                                envelope))
    if args.write_package_data:
        thresholds = {f"p{round(r['precision_target'] * 100)}": r["threshold"] for r in rows
                      if r["threshold"] is not None}
        routes = bool(getattr(encoder, "routing", False))
        languages = tuple(getattr(encoder, "languages", ()))
        print("updated", write_thresholds(
            args.model, encoder.fingerprint, thresholds,
            f"{payload['data']}, {payload['images']} photos",
            language=args.language if routes else None,
            default=not routes or languages[:1] == (args.language,)))


if __name__ == "__main__":
    main()
