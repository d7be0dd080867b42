"""One-off: give every result file written before the envelope existed the same envelope.

    python tools/migrate_result_envelopes.py            # rewrites benchmarks/results/*.json

Benchmarks now write `{"envelope": {...}, "result": PAYLOAD}` (benchmarks/_common.py). Older
files recorded the CPU, the load average and the date in five different ways, or not at all.
This moves what a file recorded into the envelope and says what it did not record; it never
fills a gap with a guess:

- cpu: parsed from the file's own "cpu" string ("MODEL (flags)"); otherwise null with
  "cpu_note": "not recorded".
- load_average: from the file's load keys (`load_average_end`, `load_average_1min`,
  `loadavg_1min_before_after`, `load_average_before`, `load_avg_end`); missing sides are null.
- command: the file's own, else the one the README printed beside these numbers (named as
  such), else null.
- git_commit: null (no file recorded it), with the commit that first added the file.
- date: the file's own start time, else the date of the commit that last wrote the file
  (an upper bound, named as such).

Files already in the envelope are left alone, so a second run changes nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))  # _common

from _common import ENVELOPE_KEYS  # noqa: E402

# Commands the README printed beside each file's numbers (old script paths, as they ran).
README_COMMANDS = {
    "ablation_en": "python benchmarks/ablation.py --language en",
    "ablation_zh": "python benchmarks/ablation.py --language zh",
    "cli_cost": "python benchmarks/cli_cost.py",
    "embed_throughput_fusion_ensemble-en": "python benchmarks/embed_throughput.py --model "
    "fusion:ensemble-en --language en --images 300 --captions 2000",
    "embed_throughput_fusion_ensemble": "python benchmarks/embed_throughput.py --model "
    "fusion:ensemble --language en --images 300 --captions 2000",
    "embed_throughput_fusion_runs_ensembles_row13-seed0_fusion.toml": "python "
    "benchmarks/embed_throughput.py --model fusion:runs/ensembles/row13-seed0/fusion.toml "
    "--language zh --images 300 --captions 2000",
    "embed_throughput_fusion_runs_ensembles_row16-seed0_fusion.toml": "python "
    "benchmarks/embed_throughput.py --model fusion:runs/ensembles/row16-seed0/fusion.toml "
    "--language zh --images 300 --captions 2000",
    "embed_throughput_towers_lite-en": "python benchmarks/embed_throughput.py",
    "ensembles_summary": "python benchmarks/ensembles.py --summary",
    "filtered_search_30k": "python benchmarks/filtered_search.py --n 30000",
    "filtered_search_1M": "python benchmarks/filtered_search.py --n 1000000 --hnsw-m 16 "
    "--nlist 1024 --out filtered_search_1M",
    "index_build_1M_clustered": "python benchmarks/index_build.py --kinds flat,ivfpq "
    "--queries 500",
    "index_build_100k_clustered": "python benchmarks/index_build.py --n 100000 --queries 500 "
    "--stores faiss,milvus --out index_build_100k_clustered",
    "index_changes_200k": "python benchmarks/index_changes.py --n 200000 --kinds flat,hnsw",
    "index_changes_1M_flat": "python benchmarks/index_changes.py --n 1000000 --dim 64 "
    "--kinds flat --out index_changes_1M_flat",
    "index_changes_1M_hnsw": "python benchmarks/index_changes.py --n 1000000 --dim 64 "
    "--captions 0 --kinds hnsw --out index_changes_1M_hnsw",
    "index_changes_1M_flat_server": "python benchmarks/index_changes.py --n 1000000 --dim 64 "
    "--kinds flat --through server --out index_changes_1M_flat_server",
    "long_text_lite-en": "python benchmarks/long_text.py --model towers:lite-en --language en",
    "long_text_lite-zh": "python benchmarks/long_text.py --model towers:lite-zh --language zh",
    "metrics_speed_5000x25000": "python benchmarks/metrics_speed.py",
    "onnx_accuracy_lite-en_int8_budget2.4": "python benchmarks/onnx_accuracy.py --model "
    "towers:lite-en --language en --skip-torch --batchings 8 --image-int8 none",
    "onnx_accuracy_lite-en_int8_per_row": "python benchmarks/onnx_accuracy.py --model "
    "towers:lite-en --language en --skip-torch --batchings 8 --image-int8 none --per-batch "
    "--out benchmarks/results/onnx_accuracy_lite-en_int8_per_row.json",
    "onnx_accuracy_lite-en_int8_smoothed": "python benchmarks/onnx_accuracy.py --model "
    "towers:lite-en --language en --skip-torch --batchings 8 --image-int8 none --out "
    "benchmarks/results/onnx_accuracy_lite-en_int8_smoothed.json",
    "onnx_accuracy_lite-en": "python benchmarks/onnx_accuracy.py --model towers:lite-en "
    "--language en --image-int8 none,static",
    "onnx_int8_avx2_lite-en": "python benchmarks/onnx_int8_avx2.py",
    "onnx_int8_sensitivity_lite-en_per_batch": "python benchmarks/onnx_int8_sensitivity.py "
    "--model towers:lite-en --scheme per_batch",
    "onnx_int8_sensitivity_lite-en_smoothed": "python benchmarks/onnx_int8_sensitivity.py "
    "--model towers:lite-en --budget-scale 2.4 --smoothing --write",
    "onnx_speed_lite-en_int8_per_row": "python benchmarks/onnx_speed.py --model "
    "towers:lite-en --language en --per-batch --old-fp32-rule --out "
    "benchmarks/results/onnx_speed_lite-en_int8_per_row.json",
    "onnx_speed_lite-en_int8_smoothed": "python benchmarks/onnx_speed.py --out "
    "benchmarks/results/onnx_speed_lite-en_int8_smoothed.json",
    "onnx_speed_lite-en": "python benchmarks/onnx_speed.py --model towers:lite-en "
    "--language en",
    "onnx_speed_lite-zh": "python benchmarks/onnx_speed.py --model towers:lite-zh "
    "--language zh",
    "openclip_nine": "/work/venvs/openclip/bin/python benchmarks/openclip_nine.py",
    "query_latency": "python benchmarks/query_latency.py",
    "ray_embed_towers_lite-en": "python benchmarks/ray_embed.py --data "
    "../shared/data/flickr8k-cn --images 300",
    "rerank_experiment": "python benchmarks/rerank_experiment.py --data "
    "../shared/data/flickr8k-cn",
    "runtime_throughput": "python benchmarks/runtime_throughput.py --data "
    "../shared/data/flickr8k-cn",
    "runtime_throughput_amd_epyc": "python benchmarks/runtime_throughput.py --out "
    "runtime_throughput_amd_epyc",
    "search_latency": "python benchmarks/search_latency.py",
    "search_latency_clustered": "python benchmarks/search_latency.py --data clustered "
    "--kinds hnsw,ivfpq --out search_latency_clustered",
    "serve_load": "python benchmarks/serve_load.py",
    "sts_dev": "python benchmarks/sts_table.py --data ../shared/data/stsb",
    "train_throughput": "python benchmarks/train_throughput.py",
    "train_throughput_hf_random-clip-b32": "python benchmarks/train_throughput_hf.py "
    "--random-clip --data ../shared/data/flickr8k-cn",
}
for seed in (0, 1, 2):
    README_COMMANDS[f"ensembles_seed{seed}"] = f"python benchmarks/ensembles.py --seed {seed}"
    README_COMMANDS[f"levers_zh_seed{seed}"] = f"python benchmarks/levers_zh.py --seed {seed}"


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def parse_cpu(text: str, logical: int | None) -> dict:
    """'MODEL (flag, flag)' as cpu_description() wrote it."""
    found = re.fullmatch(r"(.*?) \((.*)\)", text.strip())
    model, flags = (found.group(1), found.group(2)) if found else (text, "")
    return {"model": model, "flags": [f.strip() for f in flags.split(",") if f.strip()
                                      and f.strip() != "no AVX2"], "logical_cpus": logical}


def rounded(values) -> list[float]:
    return [round(float(v), 2) for v in values]


def load_average(payload: dict) -> tuple[dict, str | None]:
    """Move the file's load keys into {"before", "after"}; a note when only part is known."""
    before = after = None
    note = None
    if "load_average_end" in payload:
        after = rounded(payload.pop("load_average_end"))
    if "load_avg_end" in payload:
        after = rounded(payload.pop("load_avg_end"))
    for key in ("load_average_1min", "loadavg_1min_before_after"):
        if key in payload:
            first, last = payload.pop(key)
            before, after = rounded([first]), rounded([last])
            note = "1-minute load only, around the measured part"
    if "load_average_before" in payload:
        before = rounded([payload.pop("load_average_before")])
        note = "1-minute load only"
    if before is None and after is None:
        note = "not recorded"
    elif before is None:
        note = "only the load at the end was recorded"
    return {"before": before, "after": after}, note


def envelope_for(path: Path, payload: object) -> dict:
    stem = path.stem
    fields = payload if isinstance(payload, dict) else {}
    logical = fields.pop("cpus", None) or fields.get("cores")
    cpu = fields.pop("cpu", None)
    envelope: dict = {"command": README_COMMANDS.get(stem)}
    envelope["command_note"] = ("not recorded by the run; the command the README printed "
                                "beside these numbers (old script path)"
                                if envelope["command"] else "not recorded")
    added = git("log", "--diff-filter=A", "--format=%H", "--", str(path)).splitlines()
    envelope["git_commit"] = None
    envelope["git_commit_note"] = ("not recorded; the file was first committed in "
                                   f"{added[-1]}" if added else "not recorded")
    if "started" in fields:
        envelope["date"] = fields["started"]
    else:
        envelope["date"] = git("log", "-1", "--format=%cI", "--", str(path)) or None
        envelope["date_note"] = "not recorded; the date of the commit that last wrote this file"
    if cpu:
        envelope["cpu"] = parse_cpu(cpu, logical)
    else:
        envelope["cpu"] = None
        envelope["cpu_note"] = "not recorded"
    envelope["load_average"], note = load_average(fields)
    if note:
        envelope["load_average_note"] = note
    return envelope


def main() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and set(data) == {"envelope", "result"}:
            continue
        envelope = envelope_for(path, data)
        assert all(key in envelope for key in ENVELOPE_KEYS), path
        path.write_text(json.dumps({"envelope": envelope, "result": data}, indent=1,
                                   ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{path.name}: cpu {'recorded' if envelope['cpu'] else 'not recorded'}")


if __name__ == "__main__":
    main()
