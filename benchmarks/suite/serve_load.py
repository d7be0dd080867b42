"""Load test of `crossmodal serve`: concurrent HTTP clients against a 100k-item index.

Index: `Collection.create(tmp, model=...)` (flat) plus one `add_vectors` of N synthetic items
with random L2-normalised image and caption vectors (nothing is encoded to build it).
Server: `crossmodal serve INDEX --rate-limit 0` in its own process on 127.0.0.1 (uvicorn).
Clients: C concurrent keep-alive clients (asyncio + httpx, one process) send R requests in
all after a warm-up, a mix of
  text  POST /api/search/text  {"query": generated English phrase, k}  (encode + search)
  like  POST /api/search/like  {"id": random item id, k}               (stored vector + search)
Reported: per kind and overall p50/p90/p99 latency (client side, ms), throughput (requests/s
over the whole run) and errors (any non-200 or transport failure; the goal is zero).

    python benchmarks/suite/serve_load.py                          # N=100,000, 8 clients, 1,200 req
    python benchmarks/suite/serve_load.py --n 20000 --requests 300 # quick check
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import httpx
import numpy as np
from query_latency import make_queries, unit_vectors

from _common import begin_run, write_result
from crossmodal.engine import Collection

RESULTS = Path(__file__).resolve().parents[1] / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-c", "from crossmodal.cli.main import cli; cli()", "serve",
               str(index), "--port", str(port), "--rate-limit", "0", "--log-level", "warning"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"the server did not answer within {timeout_s:.0f} s")


async def run_clients(base: str, plan: list[tuple[str, dict]], clients: int
                      ) -> tuple[list[tuple[str, float, bool]], float]:
    """Each client takes the next request off the shared plan until it is empty."""
    queue: asyncio.Queue = asyncio.Queue()
    for entry in plan:
        queue.put_nowait(entry)
    results: list[tuple[str, float, bool]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker() -> None:
            while not queue.empty():
                kind, body = queue.get_nowait()
                start = time.perf_counter()
                try:
                    response = await client.post(f"/api/search/{kind}", json=body)
                    ok = response.status_code == 200 and "hits" in response.json()
                except httpx.HTTPError:
                    ok = False
                results.append((kind, (time.perf_counter() - start) * 1e3, ok))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return results, time.perf_counter() - start


def summary(ms: list[float]) -> dict:
    values = np.asarray(ms)
    return {"requests": len(values), "p50_ms": float(np.median(values)),
            "p90_ms": float(np.percentile(values, 90)),
            "p99_ms": float(np.percentile(values, 99)), "mean_ms": float(values.mean())}


def make_plan(rng: np.random.Generator, count: int, n: int, text_share: float, k: int
              ) -> list[tuple[str, dict]]:
    texts = iter(make_queries(rng, count))
    return [("text", {"query": next(texts), "k": k}) if rng.random() < text_share
            else ("like", {"id": f"img_{int(rng.integers(n)):06d}", "k": k})
            for _ in range(count)]


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--text-share", type=float, default=0.5,
                        help="fraction of text searches; the rest search by item id")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="serve_load", help="results/<out>.json")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="crossmodal-serve-load-") as tmp:
        index = Path(tmp) / "index"
        start = time.perf_counter()
        collection = Collection.create(index, model=args.model)
        dim = collection.manifest.dim
        items = [{"id": f"img_{i:06d}", "path": f"img_{i:06d}.jpg", "captions": [f"caption {i}"]}
                 for i in range(args.n)]
        collection.add_vectors(items, unit_vectors(rng, args.n, dim),
                               unit_vectors(rng, args.n, dim))
        build_s = time.perf_counter() - start
        del collection, items
        print(f"built {args.n:,} items x {dim}-d in {build_s:.1f} s", file=sys.stderr)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(index, port)
        try:
            start = time.perf_counter()
            wait_ready(base, server)
            startup_s = time.perf_counter() - start
            print(f"server ready in {startup_s:.1f} s", file=sys.stderr)
            warmup = make_plan(np.random.default_rng(args.seed + 1), args.warmup, args.n,
                               args.text_share, args.k)
            asyncio.run(run_clients(base, warmup, args.clients))
            plan = make_plan(rng, args.requests, args.n, args.text_share, args.k)
            load_before = os.getloadavg()[0]
            results, wall_s = asyncio.run(run_clients(base, plan, args.clients))
            load_after = os.getloadavg()[0]
        finally:
            server.terminate()
            server.wait(30)

    errors = sum(1 for _, _, ok in results if not ok)
    report = {
        "model": args.model, "n": args.n, "dim": dim, "index_type": "flat",
        "clients": args.clients, "k": args.k, "text_share": args.text_share,
        "build_s": round(build_s, 2), "server_startup_s": round(startup_s, 2),
        "wall_s": round(wall_s, 2), "throughput_rps": round(len(results) / wall_s, 1),
        "errors": errors,
        "overall": summary([ms for _, ms, _ in results]),
        **{kind: summary([ms for k, ms, _ in results if k == kind])
           for kind in ("text", "like") if any(k == kind for k, _, _ in results)},
        "cpus": os.cpu_count(),
        "loadavg_1min_before_after": [load_before, load_after],
    }
    print(f"{'kind':<8}{'requests':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for kind in ("text", "like", "overall"):
        if kind in report:
            s = report[kind]
            print(f"{kind:<8}{s['requests']:>9}{s['p50_ms']:>9.1f}{s['p90_ms']:>9.1f}"
                  f"{s['p99_ms']:>9.1f}")
    print(f"{args.clients} clients, {report['throughput_rps']} requests/s, {errors} errors, "
          f"{args.n:,} items")
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / f"{args.out}.json"), report, envelope)
    if errors:
        sys.exit(f"{errors} requests failed")


if __name__ == "__main__":
    main()
