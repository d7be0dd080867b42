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
        return super().encode_images(images)


def register_fake() -> None:
    registry.register_backend("fake", lambda name, model_id: LoggingFakeEncoder(model_id))
    registry.load_encoder.cache_clear()
