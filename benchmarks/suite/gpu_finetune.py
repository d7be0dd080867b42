"""Fine-tune, eval and index on a GPU machine, end to end in about 5 minutes, with figures.

For the day a GPU is lent: `crossmodal finetune` (backbone features on CUDA in fp16
autocast, heads on cached features), `crossmodal eval` of the result on the val split and
`crossmodal index` of the val photos with it, each timed; the result file records the GPU,
the CPU, the load and each phase. Without Flickr8k-CN (--data) it generates photos with
captions, which times the machinery but says nothing about accuracy. Exits at once where no
CUDA device is present (--allow-cpu runs it anyway, to check the script). On the GPU only
the fine-tune's feature pass runs (fp16 autocast); its heads train on the CPU, and eval and
index embed with the model's inference runtime (ONNX Runtime on the CPU for towers:).

    python benchmarks/suite/gpu_finetune.py --data /path/to/flickr8k-cn --photos 2000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))

import numpy as np
import torch
from PIL import Image

from _common import RESULTS, begin_run, write_result


def generated(folder: Path, n: int) -> tuple[Path, Path]:
    """n noisy photos with sidecar captions in folder/photos; (photos, table)."""
    rng = np.random.default_rng(0)
    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    colours, things = ["red", "green", "blue", "white", "black"], ["dog", "cat", "car", "boat"]
    rows = ["image,caption"]
    for i in range(n):
        tint = rng.integers(0, 255, 3)
        pixels = np.clip(rng.normal(tint, 40, (160, 240, 3)), 0, 255).astype(np.uint8)
        path = photos / f"p{i:05d}.jpg"
        Image.fromarray(pixels).save(path)
        rows.append(f"{path},a {colours[i % 5]} {things[(i // 5) % 4]} number {i % 97}")
    table = folder / "photos.csv"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return photos, table


def timed(command: list[str]) -> tuple[float, str]:
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, text=True, capture_output=True)
    seconds = time.perf_counter() - started
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n", flush=True)
    done.check_returncode()
    return round(seconds, 1), done.stdout


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Flickr8K-CN folder")
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--tower", default="lite-en")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_finetune.json")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="Run without CUDA too (to check the script; figures are CPU's).")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA device here: this benchmark is for a GPU machine")
    work = Path(tempfile.mkdtemp(prefix="gpu-finetune-"))
    if args.data is not None:
        from finetune_flickr8k import write_part

        table = work / "photos.csv"
        write_part(args.data.resolve(), "en", args.photos, table)
        val = f"flickr8k-cn:{args.data.resolve()}:val:en"
        index_input = str(args.data.resolve() / "images")
    else:
        photos, table = generated(work, args.photos)
        val, index_input = None, str(photos)
    model = work / "model"
    phases = {}
    phases["finetune_s"], _ = timed(
        ["crossmodal", "finetune", "--from", f"towers:{args.tower}", "--data", str(table),
         "--out", str(model), "--epochs", str(args.epochs), "--quiet",
         *(["--val", val] if val else [])])
    eval_data = val or f"table:{table}"
    phases["eval_s"], _ = timed(["crossmodal", "eval", "--model", str(model), "--data",
                                 eval_data, "--quiet", "--out", str(work / "eval")])
    phases["index_s"], _ = timed(["crossmodal", "index", index_input, "--into",
                                  str(work / "index"), "--model", str(model), "--quiet"])
    card = json.loads((model / "model-card.json").read_text(encoding="utf-8"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    payload = {"gpu": gpu, "tower": args.tower,
               "photos": args.photos, "data": "flickr8k-cn" if args.data else "generated",
               "epochs": args.epochs, **phases, "total_s": round(sum(phases.values()), 1),
               "finetune_phases_s": card["phases_s"], "before": card["before"],
               "after": card["after"], "best_epoch": card["best_epoch"]}
    print(json.dumps({k: v for k, v in payload.items() if k not in ("before", "after")},
                     indent=1))
    print("wrote", write_result(args.out, payload, envelope))


if __name__ == "__main__":
    main()
