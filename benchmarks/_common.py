"""What several benchmarks share: the envelope every result file carries, seeded test
vectors, recall against exact results, row cosines of two embedding matrices, and running the
CLI (`crossmodal eval` of a model on val).

Not a package: each script under benchmarks/<kind>/ (and tools/) puts benchmarks/ on sys.path
and imports this module by name.

A result file is `{"envelope": {...}, "result": PAYLOAD}`. The envelope says how the numbers
were made: the command, the git commit of the code, the date (UTC), the CPU model with the
flags that choose kernels, and the load average before and after the run. `begin_run()` at the
start of a script records the first four and the load before; `write_result()` adds the load
after and writes the file; `read_result()` gives the payload back.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
ENVELOPE_KEYS = ("command", "git_commit", "date", "cpu", "load_average")
# The /proc/cpuinfo flags that pick ONNX Runtime's int8 kernels and torch's bf16 path (as
# crossmodal.models.speed.KERNEL_FLAGS; repeated so that this module needs no torch).
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                "amx_int8")


def cpu_record(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict | None:
    """{"model", "flags" (those of KERNEL_FLAGS present), "logical_cpus"}; None where the
    CPU cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="ignore")
    except OSError:
        return None
    first = text.split("\n\n")[0].splitlines()
    fields = {key.strip(): value.strip()
              for key, value in (line.split(":", 1) for line in first if ":" in line)}
    present = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", "unknown CPU"),
            "flags": [flag for flag in KERNEL_FLAGS if flag in present],
            "logical_cpus": os.cpu_count()}


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def begin_run() -> dict:
    """The envelope of the run starting now (the load average after is added on writing)."""
    commit = _git("rev-parse", "HEAD")
    envelope = {
        "command": shlex.join(["python", *sys.argv]),
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_record(),
        "load_average": {"before": _load_average(), "after": None},
    }
    if commit is None:
        envelope["git_commit_note"] = "not a git checkout"
    if envelope["cpu"] is None:
        envelope["cpu_note"] = "not readable (/proc/cpuinfo)"
    return envelope


def write_result(path: Path, payload: object, envelope: dict) -> Path:
    """Write `payload` with its envelope (the load average after is taken now)."""
    envelope = {**envelope, "load_average": {**envelope["load_average"],
                                             "after": _load_average()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"envelope": envelope, "result": payload}, indent=1,
                               ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_result(path: Path) -> object:
    """The payload of a result file written by `write_result`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["result"]


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
