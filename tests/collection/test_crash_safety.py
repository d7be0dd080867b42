"""kill -9 a writer at random moments: the index must always open, whole and consistent."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from crossmodal.engine import Collection
from tests.fakes import FakeEncoder
from tests.paths import REPO

WRITER = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[3], sys.argv[4]]
    from crossmodal.engine import Collection
    from crossmodal.collection import commits as generations
    from tests.fakes import FakeEncoder
    from tests.image_helpers import write_image
    from pathlib import Path
    index, photos = Path(sys.argv[1]), Path(sys.argv[2])
    if sys.argv[5] == "compact":  # a new generation every few commits, not only log records
        generations.WAL_MIN_BYTES = 0
    encoder = FakeEncoder()
    collection = Collection.open(index, encoder=encoder)
    print("ready", flush=True)

    def acknowledge():  # what this commit made durable: the commit number and the items
        print(json.dumps([collection.manifest.generation, sorted(collection._row_of)]),
              flush=True)

    n = 0
    while True:  # add and remove forever, committing each time, until killed
        n += 1
        write_image(photos / f"p{n % 7}.png", (n * 37 % 256, n * 11 % 256, 90))
        collection.add_paths([photos], progress=False)
        acknowledge()
        collection.remove([f"p{(n + 3) % 7}.png"])
        acknowledge()
""")


def test_kill_9_never_leaves_a_broken_index(tmp_path, colour_folder, caplog):
    encoder = FakeEncoder()
    index = tmp_path / "index"
    Collection.create(index, model="fake:colours", encoder=encoder).add_paths(
        [colour_folder], progress=False)
    rng = random.Random(0)
    generations_seen = set()
    for kill in range(10):  # log records only, then also new generations, in turn
        mode = ("log", "compact")[kill % 2]
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index), str(colour_folder), str(REPO),
             str(REPO / "src"), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read().decode()[-2000:]
        proc.stdout.readline()  # one commit done: commits are now running back to back
        time.sleep(rng.random() * 0.3)
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        acknowledged = [json.loads(line) for line in out.splitlines() if line.strip()]
        collection = Collection.open(index, encoder=encoder)
        assert collection.manifest.verify(index) == []
        assert len(collection.items) == len(collection.images.vectors)
        assert len(collection.text_rows) == len(collection.texts.vectors)
        hits = collection.search_text("red", k=50)
        assert len(hits) == len(collection)
        # The keyword index: its generation's file plus the log, never rebuilt (the file
        # of a generation is committed with it), and in step with the items.
        with caplog.at_level(logging.WARNING, "crossmodal.engine"):
            named = collection.search_text("png jpg webp bmp", k=50, mode="keyword")
        assert sorted(h.id for h in named) == sorted(collection._row_of)
        assert "rebuilt" not in caplog.text
        if acknowledged:  # no acknowledged commit lost; at most the one in flight added
            commit, ids = acknowledged[-1]
            assert collection.manifest.generation in (commit, commit + 1)
            if collection.manifest.generation == commit:
                assert sorted(collection._row_of) == ids
        generations_seen.add(collection.stamp()[0])
    assert len(collection) > 4, "the writers never committed: the test proved nothing"
    assert len(generations_seen) > 2, "no new generation was written: compaction untested"
