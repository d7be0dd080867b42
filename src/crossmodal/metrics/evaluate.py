"""Both directions of an image-text set, under a protocol: the whole set, or n folds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crossmodal.metrics.ranks import positive_ranks, require_finite
from crossmodal.metrics.retrieval import DEFAULT_KS, direction_metrics

PROTOCOLS = ("full", "5fold")


def evaluate_pairs(
    image_emb: np.ndarray, text_emb: np.ndarray, text_images: Sequence[Sequence[int]],
    ks: Sequence[int] = DEFAULT_KS, ties: str = "pessimistic",
) -> dict:
    """i2t and t2i metrics; `text_images[t]` are the image rows text t describes (or the
    one row, given a flat sequence of ints; a row listed twice counts once). Embeddings
    with NaN or inf are refused (`NonFiniteError`, naming how many rows of each side)."""
    require_finite(image=image_emb, text=text_emb)
    if len(text_images) and np.isscalar(text_images[0]):
        text_images = [[int(row)] for row in text_images]
    image_texts: list[list[int]] = [[] for _ in range(len(image_emb))]
    for text, rows in enumerate(text_images):
        for row in rows:
            image_texts[row].append(text)
    keep = [i for i, texts in enumerate(image_texts) if texts]  # images without captions
    i2t = direction_metrics(
        positive_ranks(image_emb[keep], text_emb, [image_texts[i] for i in keep], ties), ks)
    t2i = direction_metrics(positive_ranks(text_emb, image_emb, text_images, ties), ks)
    rsum = sum(d[f"R@{k}"] for d in (i2t, t2i) for k in DEFAULT_KS if f"R@{k}" in d)
    return {"image_to_text": i2t, "text_to_image": t2i, "rsum": rsum, "ties": ties,
            "images": len(keep), "texts": len(text_images)}


def evaluate_folds(
    image_emb: np.ndarray, text_emb: np.ndarray, text_images: Sequence[Sequence[int]],
    folds: int = 5, ks: Sequence[int] = DEFAULT_KS, ties: str = "pessimistic",
) -> dict:
    """COCO 1K: images in `folds` consecutive blocks, each with its own captions; mean."""
    require_finite(image=image_emb, text=text_emb)  # counts over the whole set, not a fold
    n = len(image_emb) // folds
    reports = []
    for fold in range(folds):
        lo, hi = fold * n, (fold + 1) * n
        texts = [t for t, rows in enumerate(text_images) if all(lo <= r < hi for r in rows)]
        reports.append(evaluate_pairs(image_emb[lo:hi], text_emb[texts],
                                      [[r - lo for r in text_images[t]] for t in texts], ks, ties))
    mean = {direction: {key: float(np.mean([r[direction][key] for r in reports]))
                        for key in reports[0][direction]}
            for direction in ("image_to_text", "text_to_image")}
    return {**mean, "rsum": float(np.mean([r["rsum"] for r in reports])), "ties": ties,
            "folds": folds, "images": n * folds, "texts": sum(r["texts"] for r in reports)}


def evaluate(image_emb: np.ndarray, text_emb: np.ndarray, text_images: Sequence[Sequence[int]],
             protocol: str = "full", ks: Sequence[int] = DEFAULT_KS,
             ties: str = "pessimistic") -> dict:
    if protocol == "full":
        report = evaluate_pairs(image_emb, text_emb, text_images, ks, ties)
    elif protocol == "5fold":
        report = evaluate_folds(image_emb, text_emb, text_images, 5, ks, ties)
    else:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    report["protocol"] = protocol
    return report
