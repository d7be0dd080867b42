"""Ray worker setup hook for tests: a `fake:` model that logs every image it encodes.

Workers are separate processes, so the `fake_encoder` fixture's registration does not reach
them; Ray runs `register_fake` in each worker (runtime_env's worker_process_setup_hook).
With CROSSMODAL_TEST_DIR set, each encoded image's mean colour is appended to encode.log
there, and the process kills itself (SIGKILL, as if a node died) on a magenta image while
the file `kill-armed` exists (claimed once, so the retry succeeds).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from crossmodal.models import registry
from tests.fakes import FakeEncoder


def colour_of(image) -> tuple[int, int, int]:
    rgb = np.asarray(image.convert("RGB"), np.float32).mean((0, 1))
    return tuple(int(round(v)) for v in rgb)


class LoggingFakeEncoder(FakeEncoder):
    def encode_images(self, images):
        folder = os.environ.get("CROSSMODAL_TEST_DIR")
        if folder:
            colours = [colour_of(image) for image in images]
            with open(Path(folder) / "encode.log", "a") as log:
                log.writelines(f"{r},{g},{b}\n" for r, g, b in colours)
            armed = Path(folder) / "kill-armed"
            if any(c == (255, 0, 255) for c in colours) and armed.exists():
                try:
                    os.rename(armed, Path(folder) / "kill-fired")
                except FileNotFoundError:
                    pass
                else:
                    os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(float(os.environ.get("CROSSMODAL_TEST_ENCODE_SLEEP", "0")))
        return super().encode_images(images)


def register_fake() -> None:
    registry.register_backend("fake", lambda name, model_id: LoggingFakeEncoder(model_id))
    registry.load_encoder.cache_clear()


def main() -> None:
    """`python -m tests.ray_worker_setup PHOTOS OUT`: a driver to kill mid-run (slow test)."""
    import logging
    import sys

    import ray

    from crossmodal.distributed.inputs import plan_shards
    from crossmodal.distributed.ray_embed import embed_plan

    root = Path(__file__).resolve().parents[1]
    register_fake()
    ray.init(address="local", num_cpus=1, include_dashboard=False,
             logging_level=logging.WARNING, runtime_env={
        "env_vars": {"PYTHONPATH": f"{root / 'src'}:{root}",
                     "CROSSMODAL_TEST_DIR": os.environ["CROSSMODAL_TEST_DIR"],
                     "CROSSMODAL_TEST_ENCODE_SLEEP": os.environ.get(
                         "CROSSMODAL_TEST_ENCODE_SLEEP", "0")},
        "worker_process_setup_hook": "tests.ray_worker_setup.register_fake"})
    embed_plan(plan_shards([sys.argv[1]], shard_size=2), sys.argv[2], "fake:colours",
               progress=False)


if __name__ == "__main__":
    main()
