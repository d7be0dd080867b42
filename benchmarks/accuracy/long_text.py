"""Long text queries: what head / tail truncation and chunk-averaging keep (issue 16).

NewsImages' queries are whole articles, longer than a text tower's context. Flickr8k val
stands in: each image's 5 captions, in a seeded random order, joined into one paragraph
(~60-70 tokens in English), is a text->image query over the 1,000 val images. Token budgets
below the model's context (`--budgets`, e.g. 48 and 24 tokens) make the paragraph "too long"
in a controlled way; at the model's own context nothing is cut, the reference. Policies
(`crossmodal.models.long_text`): head (first words that fit), tail (last words that fit),
chunks (pieces that fit, token-weighted mean), sentences (each sentence a piece, averaged
the same way, even when the whole text fits). Also shown: one caption as the query (the
standard t2i task, every caption), for scale.

    python benchmarks/accuracy/long_text.py --model towers:lite-en --language en
    python benchmarks/accuracy/long_text.py --model towers:lite-zh --language zh
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.metrics.ranks import positive_ranks
from crossmodal.metrics.retrieval import direction_metrics
from crossmodal.models.long_text import POLICIES, LongTextPolicy, encode_long_texts
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parents[1] / "results"


def paragraphs(dataset, seed: int, language: str) -> list[str]:
    """One text per image: its captions in a seeded random order, as sentences."""
    rng = random.Random(seed)
    stop, space = ("。", "") if language == "zh" else (".", " ")
    out = []
    for texts in dataset.image_texts():
        captions = [dataset.texts[t].strip().rstrip(".。 ") + stop for t in texts]
        rng.shuffle(captions)
        out.append(space.join(captions))
    return out


def t2i(queries: np.ndarray, images: np.ndarray, positives: list[list[int]]) -> dict:
    metrics = direction_metrics(positive_ranks(queries, images, positives))
    return {k: round(metrics[k], 4 if k == "MRR" else 2) for k in ("R@1", "R@5", "R@10", "MRR")}


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en")
    parser.add_argument("--budgets", default="48,24", help="token budgets below the context")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dataset = load_flickr8k_cn(args.data, "val", args.language)
    encoder = load_encoder(args.model)
    embedded = embed_dataset(encoder, dataset, progress=False)
    texts = paragraphs(dataset, args.seed, args.language)
    lengths = encoder.text_lengths(texts)
    own = [[i] for i in range(len(texts))]
    rows = [{"query": "one caption", "budget": encoder.context_length, "policy": "-",
             **t2i(embedded.texts, embedded.images,
                   [[int(row)] for row in dataset.text_image])}]
    budgets = [encoder.context_length] + [int(b) for b in args.budgets.split(",") if b]
    for budget in budgets:
        for mode in POLICIES if budget < encoder.context_length else ("head", "sentences"):
            policy = LongTextPolicy(mode, budget if budget < encoder.context_length else None)
            vectors = encode_long_texts(encoder, texts, policy)
            rows.append({"query": "5 captions", "budget": budget, "policy": mode,
                         **t2i(vectors, embedded.images, own)})
            print(rows[-1], flush=True)
    print(f"\n{args.model} on Flickr8k val ({args.language}), 1,000 paragraph queries; "
          f"tokens per paragraph: median {int(np.median(lengths))}, max {max(lengths)}")
    print(f"{'query':<12}{'budget':>7} {'policy':<10}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MRR':>7}")
    for row in rows:
        print(f"{row['query']:<12}{row['budget']:>7} {row['policy']:<10}{row['R@1']:>7.1f}"
              f"{row['R@5']:>7.1f}{row['R@10']:>7.1f}{row['MRR']:>7.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"long_text_{args.model.split(':')[-1]}.json"
    write_result(out, {"model": args.model, "language": args.language,
                               "seed": args.seed, "median_tokens": int(np.median(lengths)),
                               "max_tokens": max(lengths), "rows": rows}, envelope)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
