"""Loss ablation on Flickr8k val, heads trained on frozen towers: one row per training config.

Runs `crossmodal train --config` for each config (cached features make each run a minute or
less), then prints R@1/5/10 both directions and Rsum of the best val checkpoint, and CUSA's
uni-modal column: text->text retrieval on val (the other captions of the same photo are the
positives, the query left out; `crossmodal eval --task text-text` on the trained model).
Flickr8k has no class labels, so the image->image column needs another set (imagefolder:).

    python benchmarks/accuracy/ablation.py --language en
    python benchmarks/accuracy/ablation.py --language zh
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.evaluation.run import evaluate_model_within
from crossmodal.models.registry import load_encoder
from crossmodal.train.config import TrainConfig
from crossmodal.train.run import run_training

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = [("InfoNCE alone", "infonce"), ("+ instance loss, two-stage", "icone-heads"),
            ("+ CUSA (CSA + USA)", "cusa"), ("all together", "all")]


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=["en", "zh"], default="en")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k-cn"))
    args = parser.parse_args()
    val = load_flickr8k_cn(args.data, "val", args.language)
    rows = []
    for title, variant in VARIANTS:
        path = ROOT / "configs" / f"lite-{args.language}-{variant}.toml"
        if not path.is_file():
            print(f"skipping {title}: no {path.relative_to(ROOT)}")
            continue
        config = TrainConfig.load(path)
        config.output_dir = str(ROOT / "runs" / "ablation" / path.stem)
        best = run_training(config, resume=False, progress=False)
        log = [json.loads(line) for line in Path(best["log"]).read_text().splitlines()]
        speeds = [r["train_pairs_per_s"] for r in log if "train_pairs_per_s" in r]
        trained = load_encoder(f"towers:{Path(config.output_dir) / 'tower.json'}")
        within = evaluate_model_within(trained, val, "text-text", progress=False)
        rows.append({"variant": title, "config": str(path.relative_to(ROOT)), **best["val"],
                     "stage": best["stage"], "epoch": best["epoch"],
                     "pairs_per_s": sum(speeds) / len(speeds),
                     "text_text": {k: within["within"][k] for k in ("R@1", "mAP@R", "R-P")}})
    header = f"{'variant':<28} {'i2t R@1':>7} {'R@5':>5} {'R@10':>5} {'t2i R@1':>7} {'R@5':>5} " \
             f"{'R@10':>5} {'Rsum':>6} {'t2t R@1':>7} {'mAP@R':>6} {'pairs/s':>8}"
    print(header)
    for r in rows:
        i, t = r["image_to_text"], r["text_to_image"]
        print(f"{r['variant']:<28} {i['R@1']:>7.1f} {i['R@5']:>5.1f} {i['R@10']:>5.1f} "
              f"{t['R@1']:>7.1f} {t['R@5']:>5.1f} {t['R@10']:>5.1f} {r['rsum']:>6.1f} "
              f"{r['text_text']['R@1']:>7.1f} {r['text_text']['mAP@R']:>6.1f} "
              f"{r['pairs_per_s']:>8.0f}")
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / f"ablation_{args.language}.json"), rows, envelope)


if __name__ == "__main__":
    main()
