"""Wall time and peak memory of two CLI commands as a user runs them, each in its own process.

  index   `crossmodal index PHOTOS --into TMP` over `--photos` files: the Flickr8k photos in
          the data folder (train + val + extra, 7,091), then as many of them again under
          other names (symlinks in a temporary folder: read in place, never copied) up to
          the count; the encoder's cache is warm (the export made beforehand, not timed)
  eval    `crossmodal eval` of Flickr8k val (1,000 images, 5,000 captions) with CROSSMODAL_CACHE
          pointed at an empty folder: the first-use ONNX export and every embedding included

Peak RSS is the child's maximum resident set (os.wait4's rusage of that process).
Goals (issue 14): index over 10,000 photos <= 1.5 GB; eval from an empty cache <= 60 s.

    python benchmarks/suite/cli_cost.py --data ../shared/data/flickr8k-cn
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import begin_run, write_result

RESULTS = Path(__file__).resolve().parents[1] / "results"


def run(command: list[str], env: dict[str, str], logs: Path) -> dict:
    """Wall time and peak RSS of one child process (os.wait4 gives that child's own usage)."""
    with open(logs / "out.txt", "w") as out, open(logs / "err.txt", "w") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.exit(f"{' '.join(command)} failed ({child.returncode}):\n"
                 f"{(logs / 'err.txt').read_text()[-3000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "stdout_tail": (logs / "out.txt").read_text()[-600:]}


def photo_folder(data: Path, count: int, into: Path) -> int:
    photos = sorted((data / "images").glob("*.jpg")) + sorted((data / "extra_images").glob("*.jpg"))
    into.mkdir()
    for i in range(count):
        source = photos[i % len(photos)]
        name = source.name if i < len(photos) else f"again{i // len(photos)}_{source.name}"
        (into / name).symlink_to(source.resolve())
    return len(photos)


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--skip", default="", help="comma list of steps to skip (index,eval)")
    parser.add_argument("--out", default="cli_cost")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    crossmodal = [sys.executable, "-m", "crossmodal"]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="cli_cost_") as tmp:
        tmp = Path(tmp)
        if "eval" not in args.skip:
            env = {**os.environ, "CROSSMODAL_CACHE": str(tmp / "empty-cache")}
            rows["eval"] = run([*crossmodal, "eval", "--model", args.model, "--data",
                                f"flickr8k-cn:{data}", "--split", "val", "--language", "en",
                                "--out", str(tmp / "eval-results")],
                               env, tmp)
            print(f"eval from an empty cache: {rows['eval']['wall_s']} s, peak RSS "
                  f"{rows['eval']['peak_rss_mb']} MB (goal <= 60 s)", flush=True)
        if "index" not in args.skip:
            distinct = photo_folder(data, args.photos, tmp / "photos")
            rows["index"] = run([*crossmodal, "index", str(tmp / "photos"), "--into",
                                 str(tmp / "index"), "--model", args.model], dict(os.environ), tmp)
            rows["index"].update(photos=args.photos, distinct_photos=distinct)
            print(f"index of {args.photos:,} photos: {rows['index']['wall_s']} s, peak RSS "
                  f"{rows['index']['peak_rss_mb']} MB (goal <= 1,536 MB)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    result = {"cores": os.cpu_count(),
              "load_average_end": os.getloadavg(), "model": args.model, "rows": rows}
    write_result((RESULTS / f"{args.out}.json"), result, envelope)
    print(f"wrote {RESULTS / f'{args.out}.json'}")


if __name__ == "__main__":
    main()
