"""The nine OpenAI CLIP backbones run for real through open_clip, with seeded random weights.

For each architecture: build `open_clip:<name>/random` through the registry; check its vectors
against open_clip's own model (built by open_clip under the same seed, its own preprocess and
tokenizer); index the bundled samples, search and evaluate through the CLI; time images/s
(JPEG files -> vectors) and captions/s. No pretrained weights are used: no accuracy here.

    bash benchmarks/suite/openclip_env.sh     # the venv with open_clip + torchvision (once)
    /work/venvs/openclip/bin/python benchmarks/suite/openclip_nine.py [--archs RN50,ViT-B/32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
import open_clip
import torch
import torchvision
from PIL import Image

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.loader import iter_image_batches
from crossmodal.models.openclip import OPENAI_MODELS
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parents[1] / "results"
SAMPLES = Path(__file__).resolve().parents[2] / "src" / "crossmodal" / "samples"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "flickr8k-cn"
SEED = 0


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def check_inputs(data) -> tuple[list[Image.Image], list[str]]:
    """The bundled samples (224 px squares) plus non-square Flickr8k photos, so both the
    crop-free and the resize-and-crop paths of preprocessing are compared; their captions
    (English and Chinese lines of the samples: the tokenizer's byte fallback too)."""
    paths = sorted(SAMPLES.glob("*.jpg"))[:6] + list(data.images[:2])  # few: RN50x64 is slow
    images = [Image.open(path).convert("RGB") for path in paths]
    texts = [line for path in sorted(SAMPLES.glob("*.txt"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return images, texts + list(data.texts[:4])


@torch.inference_mode()
def reference_vectors(arch: str, images, texts) -> tuple[np.ndarray, np.ndarray, dict]:
    """open_clip's own model, transform and tokenizer, built by open_clip under the seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=None, force_quick_gelu=True)  # OpenAI's archs use QuickGELU
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    image_rows = model.encode_image(torch.stack([preprocess(im) for im in images]))
    text_rows = model.encode_text(tokenizer(texts))
    unit = torch.nn.functional.normalize
    return (unit(image_rows, dim=-1).numpy(), unit(text_rows, dim=-1).numpy(),
            model.state_dict())


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Row cosines; and the same after removing the rows' mean: random towers map every input
    near one direction (rows alike to ~0.999), so plain cosines alone would prove little."""
    centre = theirs.mean(0, keepdims=True)
    a, b = ours - centre, theirs - centre
    centred = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                          1e-12)
    pairwise = theirs @ theirs.T
    off_diagonal = pairwise[~np.eye(len(theirs), dtype=bool)]
    return {"cos_min": round(float((ours * theirs).sum(1).min()), 6),
            "centred_cos_min": round(float(centred.min()), 6),
            "rows_alike_mean_cos": round(float(off_diagonal.mean()), 4)}


def vector_check(encoder, arch: str, images, texts) -> dict:
    ref_images, ref_texts, ref_state = reference_vectors(arch, images, texts)
    ours = encoder.model.state_dict()
    same_weights = ours.keys() == ref_state.keys() and all(
        torch.equal(ours[k], ref_state[k]) for k in ours)
    del ref_state
    return {"same_weights": same_weights, "inputs": [len(images), len(texts)],
            "images": agreement(encoder.encode_images(images), ref_images),
            "texts": agreement(encoder.encode_texts(texts), ref_texts)}


def speed(encoder, data, n_images: int, n_captions: int, batch: int) -> dict:
    """images/s from JPEG files (read + decode + preprocess + encode), captions/s; a short
    warm-up first (first calls allocate and pick kernels)."""
    encoder.encode_texts(data.texts[:4])
    for _, images, _ in iter_image_batches(data.images[:2], 2,
                                           target_size=encoder.preprocessing.size):
        encoder.encode_images(images)
    before = load_avg()
    start = time.perf_counter()
    done = 0
    for _, images, _ in iter_image_batches(data.images[:n_images], batch,
                                           target_size=encoder.preprocessing.size):
        encoder.encode_images(images)
        done += len(images)
    image_s = time.perf_counter() - start
    texts = data.texts[:n_captions]
    start = time.perf_counter()
    for i in range(0, len(texts), 32):
        encoder.encode_texts(texts[i:i + 32])
    text_s = time.perf_counter() - start
    return {"images": done, "images_per_s": round(done / image_s, 2),
            "captions": len(texts), "captions_per_s": round(len(texts) / text_s, 1),
            "image_batch": batch, "text_batch": 32, "load_avg_before": before,
            "load_avg_after": load_avg()}


def cli(*args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "crossmodal", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"crossmodal {' '.join(map(str, args))}: exit {done.returncode}\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done, round(time.perf_counter() - start, 1)


def cli_checks(model: str, work: Path, data_root: Path, sample: int, env: dict) -> dict:
    """index the samples, search image -> images and caption -> texts (a query that is in the
    index must come back first: true even for random weights), eval a sample of Flickr8k."""
    index = work / ("idx-" + model.split(":")[1].replace("/", "_"))
    out, index_s = cli("index", SAMPLES, "--into", index, "--model", model, "--quiet", env=env)
    query = SAMPLES / "dog-grass.jpg"
    hits, _ = cli("search", index, "--image", query, "--k", "3", "--json", env=env)
    caption = (SAMPLES / "kayak.txt").read_text(encoding="utf-8").splitlines()[0]
    text_hits, _ = cli("search", index, caption, "--target", "texts", "--k", "3", "--json",
                       env=env)
    report = work / ("eval-" + index.name[4:])
    _, eval_s = cli("eval", "--model", model, "--data", f"flickr8k-cn:{data_root}", "--split",
                    "val", "--language", "en", "--sample", sample, "--quiet", "--out", report,
                    env=env)
    result = json.loads(next(report.glob("eval-*.json")).read_text())
    return {"index": out.stdout.strip().splitlines()[-1], "index_s": index_s,
            "image_query_first": json.loads(hits.stdout)[0]["id"] == query.name,
            "caption_query_first": json.loads(text_hits.stdout)[0]["text"] == caption,
            "eval_images": result["images"], "eval_rsum_random_weights": result["rsum"],
            "eval_s": eval_s}


def compare(names: list[str], args, env: dict) -> dict:
    """`crossmodal compare` over every model run, on eval's sample: the embeddings come from
    eval's cache (same models, same data), so this costs model loads and metrics."""
    models = ",".join(f"open_clip:{name}/random" for name in names)
    out, seconds = cli("compare", "--models", models, "--data", f"flickr8k-cn:{args.data}",
                       "--split", "val", "--language", "en", "--sample", args.sample, "--quiet",
                       "--out", Path(env["CROSSMODAL_CACHE"]).parent / "compare", env=env)
    rows = [line for line in out.stdout.splitlines() if "open_clip:" in line]
    return {"models": len(names), "table_rows": len(rows), "seconds": seconds}


def run_arch(name: str, args, data, inputs, work: Path, env: dict) -> dict:
    model_id = f"open_clip:{name}/random"
    load_encoder.cache_clear()
    start = time.perf_counter()
    encoder = load_encoder(model_id)
    row = {"model": model_id, "arch": encoder.spec.arch, "load_s":
           round(time.perf_counter() - start, 1), "dim": encoder.dim,
           "image_size": encoder.preprocessing.size, "context_length": encoder.context_length,
           "fingerprint": encoder.fingerprint,
           "params_m": round(sum(p.numel() for p in encoder.model.parameters()) / 1e6, 1)}
    row["check"] = vector_check(encoder, encoder.spec.arch, *inputs)
    row["speed"] = speed(encoder, data, args.images, args.captions, args.batch_size)
    del encoder
    load_encoder.cache_clear()  # the CLI runs in its own processes; free this copy first
    row["cli"] = cli_checks(model_id, work, args.data, args.sample, env)
    print(f"{name}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | params (M) | px | dim | images/s | captions/s | load avg | image cos "
             "(centred) | text cos (centred) | CLI index/search/eval |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"]
    for r in rows:
        s, c, q = r["speed"], r["check"], r["cli"]
        ok = q["image_query_first"] and q["caption_query_first"]
        lines.append(
            f"| `{r['model']}` | {r['params_m']} | {r['image_size']} | {r['dim']} | "
            f"{s['images_per_s']} | {s['captions_per_s']} | {s['load_avg_before'][0]} | "
            f"{c['images']['cos_min']} ({c['images']['centred_cos_min']}) | "
            f"{c['texts']['cos_min']} ({c['texts']['centred_cos_min']}) | "
            f"{'ok' if ok else 'FAILED'} |")
    return "\n".join(lines)


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(OPENAI_MODELS),
                        help="comma-separated OpenAI names (default: all nine)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Flickr8k-CN root")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--captions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sample", type=int, default=8, help="images of `crossmodal eval`")
    parser.add_argument("--out", type=Path, default=RESULTS / "openclip_nine.json")
    args = parser.parse_args()
    names = args.archs.split(",")
    unknown = [n for n in names if n not in OPENAI_MODELS]
    if unknown:
        parser.error(f"not OpenAI names: {unknown} (choose from {list(OPENAI_MODELS)})")
    data = load_flickr8k_cn(args.data, "val", "en")
    inputs = check_inputs(data)
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "threads": torch.get_num_threads(),
              "cores": os.cpu_count(), "python": platform.python_version(),
              "torch": torch.__version__, "torchvision": torchvision.__version__,
              "open_clip": open_clip.__version__, "weights": f"random, seed {SEED}",
              "speed_inputs": "Flickr8k val JPEGs (files -> vectors), English val captions",
              "rows": [], "failed": {}}
    path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openclip-nine-") as tmp:
        env = {**os.environ, "CROSSMODAL_CACHE": str(Path(tmp) / "cache")}
        for name in names:
            try:
                result["rows"].append(run_arch(name, args, data, inputs, Path(tmp), env))
            except (RuntimeError, OSError, MemoryError) as exc:  # say which, run the rest
                result["failed"][name] = f"{type(exc).__name__}: {exc}"[:3000]
            result["load_avg_end"] = load_avg()
            write_result(path, result, envelope)  # each arch kept as it ends
        done = [row["model"].split(":")[1].rsplit("/", 1)[0] for row in result["rows"]]
        result["compare"] = compare(done, args, env) if len(done) > 1 else None
    write_result(path, result, envelope)
    print(table(result["rows"]))
    for name, error in result["failed"].items():
        print(f"{name}: FAILED {error.splitlines()[0]}")
    print(f"CPU: {envelope['cpu']}; threads {result['threads']}; load average at the end "
          f"{result['load_avg_end']}; {path}")

if __name__ == "__main__":
    main()
