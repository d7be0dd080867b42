"""What several benchmarks share: seeded test vectors, recall against exact results, row
cosines of two embedding matrices, and running the CLI (`crossmodal eval` of a model on val).
A sibling module, not a package: `python benchmarks/x.py` puts this folder on sys.path."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact neighbours (a row of `truth`) found in `ids`."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth, strict=True)]))


def row_cosines(a: np.ndarray, b: np.ndarray) -> dict:
    """Lowest and mean cosine of matching rows of two unit-row matrices."""
    cos = (a * b).sum(1)
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}


def unit_vectors(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered_vectors(rng: np.random.Generator, n: int, dim: int, centres: int = 10_000,
                      spread: float = 0.05) -> np.ndarray:
    """Points around random centres, as real embeddings cluster by topic."""
    middle = unit_vectors(rng, centres, dim)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        block = middle[rng.integers(0, centres, size)] + spread * rng.standard_normal(
            (size, dim), dtype=np.float32)
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def run(command: list[str]) -> str:
    """A CLI command, echoed; its stdout (a failure raises with the command's exit status)."""
    print("$", shlex.join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-4000:], file=sys.stderr, flush=True)  # why, before the traceback
        done.check_returncode()
    return done.stdout


def evaluate(model: str, data: str, language: str, out: Path) -> dict:
    """`crossmodal eval` of `model` on Flickr8k-CN val in `language`: Rsum and both R@1."""
    for old in Path(out).glob("*.json"):  # a rerun into the same folder reads its own report
        old.unlink()
    run(["crossmodal", "eval", "--model", model, "--data", f"flickr8k-cn:{data}",
         "--split", "val", "--language", language, "--out", str(out)])
    (found,) = Path(out).glob("*.json")
    report = json.loads(found.read_text(encoding="utf-8"))
    return {"rsum": report["rsum"], "i2t_R@1": report["image_to_text"]["R@1"],
            "t2i_R@1": report["text_to_image"]["R@1"]}
