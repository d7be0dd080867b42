"""A server that follows new generations written by another process frees the old ones."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from crossmodal.data.images import return_freed_memory
from crossmodal.engine import Collection
from crossmodal.serve.live import LiveCollection
from tests.fakes import DIM

STATUS = Path("/proc/self/status")
SWAPS = 4
COMPACT = ("import sys; from crossmodal.engine import Collection; "
           "c = Collection.open(sys.argv[1]); c.remove([sys.argv[2]]); c.compact()")


def build(path: Path, encoder, items: int) -> Path:
    collection = Collection.create(path, model="fake:colours", encoder=encoder)
    rng = np.random.default_rng(0)
    for start in range(0, items, 10_000):
        batch = [{"id": f"f/{i:07d}.jpg", "path": f"/photos/f/{i:07d}.jpg",
                  "captions": [f"caption {i} of a photo of something"]}
                 for i in range(start, min(items, start + 10_000))]
        collection.add_vectors(batch, rng.standard_normal((len(batch), DIM), np.float32),
                               rng.standard_normal((len(batch), DIM), np.float32))
    collection.compact()
    return path


def compact_in_another_process(path: Path, removed: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", COMPACT, str(path), removed], check=True, env=env,
                   timeout=120)


def follow(live: LiveCollection) -> None:
    """A search on a request thread, as a server runs it: it picks the new generation up."""
    def search() -> None:
        with live.reading():
            pass
    thread = threading.Thread(target=search)
    thread.start()
    thread.join(60)


def test_old_generation_is_freed_without_waiting_for_the_garbage_collector(
        tmp_path, fake_encoder):
    path = build(tmp_path / "index", fake_encoder, 200)
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    old = weakref.ref(live._collection)
    old_store = weakref.ref(live._collection.images)
    compact_in_another_process(path, "f/0000000.jpg")
    gc.disable()  # freed by reference counting the moment it is swapped out
    try:
        follow(live)
        assert "f/0000000.jpg" not in live._collection
        assert old() is None and old_store() is None
    finally:
        gc.enable()


def rss() -> int:
    fields = dict(line.split(":", 1) for line in STATUS.read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024


@pytest.mark.skipif(not STATUS.exists(), reason="needs Linux /proc to measure memory")
def test_following_new_generations_gives_the_old_ones_memory_back(tmp_path, fake_encoder):
    path = build(tmp_path / "index", fake_encoder, 60_000)
    gc.collect()
    return_freed_memory()
    before_open = rss()
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    one_generation = rss() - before_open
    start = rss()
    for round_ in range(SWAPS):
        compact_in_another_process(path, f"f/{round_:07d}.jpg")
        follow(live)
        assert f"f/{round_:07d}.jpg" not in live._collection
    grown = rss() - start
    print(f"one generation {one_generation / 1e6:.0f} MB; "
          f"after {SWAPS} swaps +{grown / 1e6:.0f} MB")
    # Each swap holds two generations for a moment; afterwards one is left. With the freed
    # pages kept by the allocator, RSS stayed near two generations (measured +1.4x one
    # generation); given back, what is left over is allocator slack (measured 0.75x).
    assert grown < one_generation
