"""Cold CLI search: `crossmodal search IDX "a dog"` as a user runs it, each in a new process,
beside the warm in-process query on the same index.

Index: `Collection.create(tmp, model=...)` (flat) and one `add_vectors` of N synthetic items
with random unit vectors (as benchmarks/suite/serve_load.py builds it; nothing is encoded).
The ONNX export is made before timing (first use only, not what a user pays per search).

  cold   wall time of `python -m crossmodal search IDX QUERY --k 10` in a fresh process
         (median of --runs), and its CPU time (user + sys of that child: less sensitive to
         other processes' load than the wall time)
  warm   `collection.search_text(QUERY, k=10)` in one process after a warm-up (median)

--cpus 0,1 pins every process to those cores (the goal is stated for 2 cores).

    python benchmarks/suite/cli_search_cold.py                 # N=100,000, 7 runs
    python benchmarks/suite/cli_search_cold.py --n 20000 --runs 3
    python benchmarks/suite/cli_search_cold.py --code ../main/src --out cli_search_cold_before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, unit_vectors, write_result

RESULTS = Path(__file__).resolve().parents[1] / "results"
GOAL_S = 1.5


def build_index(path: Path, model: str, n: int, seed: int) -> int:
    from crossmodal.engine import Collection

    rng = np.random.default_rng(seed)
    collection = Collection.create(path, model=model)
    dim = collection.manifest.dim
    items = [{"id": f"img_{i:06d}", "path": f"img_{i:06d}.jpg", "captions": [f"caption {i}"]}
             for i in range(n)]
    collection.add_vectors(items, unit_vectors(rng, n, dim), unit_vectors(rng, n, dim))
    collection.compact()  # one generation on disk, as an index some time after its build is
    return dim


def run_cold(command: list[str], runs: int, cpus: set[int] | None,
             env: dict[str, str] | None = None, priority: int | None = None) -> dict:
    def prepare_child() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if priority is not None:  # e.g. -19 (root): the child as if the machine were idle
            os.setpriority(os.PRIO_PROCESS, 0, priority)

    walls, cpu_times = [], []
    for _ in range(runs):
        # Popen + wait4 by hand: communicate() reaps the child before its rusage is read.
        start = time.perf_counter()
        child = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            preexec_fn=prepare_child)
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        walls.append(time.perf_counter() - start)
        child.stderr.close()
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{' '.join(command)} failed:\n{err.decode()[-3000:]}")
        cpu_times.append(usage.ru_utime + usage.ru_stime)
    return {"runs": runs, "wall_median_s": round(statistics.median(walls), 3),
            "wall_min_s": round(min(walls), 3), "wall_max_s": round(max(walls), 3),
            "cpu_median_s": round(statistics.median(cpu_times), 3)}


PHASES = """
import json, sys, time
t0 = time.process_time()
import crossmodal.cli.main  # noqa: F401
from crossmodal.cli.search_commands import _encode_query
from crossmodal.engine import Collection
from crossmodal.index.manifest import Manifest
t1 = time.process_time()
vector, note = _encode_query(Manifest.load(sys.argv[1]).model, sys.argv[2], "head")
t2 = time.process_time()
collection = Collection.open(sys.argv[1])
t3 = time.process_time()
collection.encoder
collection.search_vectors(vector, 10, "images", 1)
t4 = time.process_time()
print(json.dumps({"imports": t1 - t0, "model_and_query": t2 - t1, "index_open": t3 - t2,
                  "search": t4 - t3}))
"""


def phases_cpu_s(index: Path, query: str, runs: int = 3) -> dict:
    """CPU seconds (all threads) of each part of a cold text search, one after the other in
    a fresh process: the CLI runs the model part beside the index part, so on two idle
    cores its wall time is about imports + the larger of the two + search."""
    rows = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", PHASES, str(index), query],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {name: round(statistics.median(r[name] for r in rows), 3) for name in rows[0]}


def warm_query_ms(index: Path, query: str, repeats: int = 50) -> float:
    from crossmodal.engine import Collection

    collection = Collection.open(index)
    for _ in range(5):
        collection.search_text(query, k=10)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        collection.search_text(query, k=10)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def _commit_of(src: str) -> str | None:
    done = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--query", default="a dog")
    parser.add_argument("--cpus", default=None, help="pin to these cores, e.g. 0,1")
    parser.add_argument("--code", default=None, metavar="SRC",
                        help="run the searches with the crossmodal package in SRC (e.g. an "
                             "older checkout's src/, for a before/after); default: this one")
    parser.add_argument("--priority", type=int, default=None, metavar="NICE",
                        help="run each search at this nice value (e.g. -19, as root): on a "
                             "machine others load, the nearest to an idle one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="cli_search_cold", help="results/<out>.json")
    args = parser.parse_args()
    envelope = begin_run()
    cpus = {int(c) for c in args.cpus.split(",")} if args.cpus else None
    if cpus:
        os.sched_setaffinity(0, cpus)

    with tempfile.TemporaryDirectory(prefix="crossmodal-cli-search-") as tmp:
        index = Path(tmp) / "index"
        dim = build_index(index, args.model, args.n, args.seed)
        command = [sys.executable, "-m", "crossmodal", "search", str(index), args.query,
                   "--k", "10"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [args.code, os.environ.get("PYTHONPATH", "")])} if args.code else None
        run_cold(command, 1, cpus, env)  # the first-use export, and the page cache, not timed
        rows = {"cold": run_cold(command, args.runs, cpus, env, args.priority)}
        if not args.code:  # the parts are this checkout's functions
            rows["cold_parts_cpu_s"] = phases_cpu_s(index, args.query)
        rows["warm_in_process_ms"] = warm_query_ms(index, args.query)

    result = {"model": args.model, "n": args.n, "dim": dim, "index_type": "flat",
              "query": args.query, "code": args.code or "this checkout",
              "code_commit": _commit_of(args.code) if args.code else envelope["git_commit"],
              "cpus_pinned": sorted(cpus) if cpus else None, "search_nice": args.priority,
              "usable_cores": len(os.sched_getaffinity(0)), "goal_s": GOAL_S, **rows}
    print(f"{'path':<8}{'runs':>6}{'median s':>10}{'min s':>8}{'max s':>8}{'CPU s':>8}")
    r = rows["cold"]
    print(f"{'cold':<8}{r['runs']:>6}{r['wall_median_s']:>10.3f}{r['wall_min_s']:>8.3f}"
          f"{r['wall_max_s']:>8.3f}{r['cpu_median_s']:>8.3f}")
    if "cold_parts_cpu_s" in rows:
        print("CPU s of the parts of a cold search:", rows["cold_parts_cpu_s"])
    print(f"warm in-process query: {rows['warm_in_process_ms']} ms; {args.n:,} items x {dim}-d; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    write_result(RESULTS / f"{args.out}.json", result, envelope)


if __name__ == "__main__":
    main()
