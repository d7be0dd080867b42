"""Catching up with another process's commits: reading them (log records, a new generation)
never holds searches; only applying them in memory does."""

from __future__ import annotations

import json
import threading
import time

import pytest

from crossmodal.engine import Collection
from crossmodal.index import manifest, wal
from crossmodal.serve.live import LiveCollection
from crossmodal.serve.rwlock import ReadWriteLock
from tests.serve.test_serve_live import _followed
from tests.serve_helpers import build_index


class SlowOnce:
    """Stands in for a reader: its first call waits until released (a slow disk)."""

    def __init__(self, real):
        self.real, self.entered, self.release = real, threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        return self.real(*args, **kwargs)


def _search_time(live: LiveCollection) -> tuple[float, int]:
    start = time.monotonic()
    with live.reading() as collection:
        size = len(collection)
    return time.monotonic() - start, size


@pytest.mark.parametrize("change", ["log record", "new generation"])
def test_searches_go_on_while_the_server_reads_another_process_commit(
        tmp_path, colour_folder, fake_encoder, monkeypatch, change):
    path = build_index(tmp_path, colour_folder, fake_encoder)
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    other = Collection.open(path, encoder=fake_encoder)  # as `crossmodal index` would
    other.add_vectors([{"id": "grey.jpg", "path": "/p/grey.jpg"}],
                      fake_encoder.encode_texts(["grey"]))
    if change == "new generation":
        other.compact()
        slow = SlowOnce(manifest.read_items)
        monkeypatch.setattr("crossmodal.collection.collection.read_items", slow)
    else:
        slow = SlowOnce(wal.read)
        monkeypatch.setattr("crossmodal.index.wal.read", slow)

    first = threading.Thread(target=_search_time, args=(live,))
    first.start()  # the search that notices the commit starts the catch-up
    assert slow.entered.wait(5)
    if change == "new generation":  # loaded in a thread of its own: not even this search waits
        first.join(2)
        assert not first.is_alive()
    elapsed, size = _search_time(live)
    assert elapsed < 1.0 and size == 4  # not held by the reading; the state before it
    slow.release.set()
    first.join(10)
    _followed(live)
    assert _search_time(live)[1] == 5


def test_a_writer_reads_other_commits_before_taking_its_change_guard(
        tmp_path, colour_folder, fake_encoder, monkeypatch):
    path = build_index(tmp_path, colour_folder, fake_encoder)
    writer = Collection.open(path, encoder=fake_encoder)
    lease = ReadWriteLock()  # as a server sets it: searches take it to read
    writer.change_guard = lease.writing
    other = Collection.open(path, encoder=fake_encoder)
    other.add_vectors([{"id": "grey.jpg", "path": "/p/grey.jpg"}],
                      fake_encoder.encode_texts(["grey"]))
    slow = SlowOnce(wal.read)
    monkeypatch.setattr("crossmodal.index.wal.read", slow)
    adding = threading.Thread(target=writer.add_vectors, args=(
        [{"id": "pink.jpg", "path": "/p/pink.jpg"}], fake_encoder.encode_texts(["pink"])))
    adding.start()
    assert slow.entered.wait(5)
    start = time.monotonic()
    with lease.reading():
        assert time.monotonic() - start < 1.0 and len(writer) == 4
    slow.release.set()
    adding.join(10)
    assert {"grey.jpg", "pink.jpg"} <= {item["id"] for item in writer.items}


@pytest.mark.parametrize("text", [
    '{"items": [{"id": "a", "captions": ["x, ]}"]}, {"id": "b"}], "texts": [["a", 0]]}',
    '{ }', '{"items": []}', '[1, 2]', '"plain"', ' {"a" : [ [1, [2]] , {"b": [3]} ] } ',
    '{"a": NaN, "a": 2}'])
def test_loads_yielding_reads_what_json_loads_reads(text):
    assert manifest.loads_yielding(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"items": [1, 2,]}', '{"items": [1 2]}', '{"a": 1,}',
                                  '{"items": [1', '{1: 2}', '{"a": 1} x', '', '{"a" 1}'])
def test_loads_yielding_refuses_what_json_loads_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        manifest.loads_yielding(text)


def test_other_threads_run_while_an_items_file_is_parsed():
    """One json.loads holds the GIL for the whole parse: a server's searches would stop."""
    items = [{"id": f"photos/{i:08d}.jpg", "path": f"/data/photos/{i:08d}.jpg",
              "captions": [f"caption of photo {i}"]} for i in range(100_000)]
    text = json.dumps({"items": items, "texts": [[item["id"], 0] for item in items]},
                      indent=1)
    turns = []
    parser = threading.Thread(target=manifest.loads_yielding, args=(text,))
    parser.start()
    while parser.is_alive():
        turns.append(time.perf_counter())
        time.sleep(0.001)
    assert len(turns) >= 20  # json.loads: the main thread gets a turn or two, at the start


def test_no_full_garbage_collection_stops_searches_while_a_generation_loads(
        tmp_path, colour_folder, fake_encoder, monkeypatch):
    """A generation's items are millions of new containers: with the collector on, they set
    off full collections of the heap that stop every thread (measured 0.6 s at 200k)."""
    import gc

    path = build_index(tmp_path, colour_folder, fake_encoder)
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    Collection.open(path, encoder=fake_encoder).compact()
    collecting = []
    real_open = Collection.open

    def watched_open(*args, **kwargs):
        collecting.append(gc.isenabled())
        return real_open(*args, **kwargs)
    monkeypatch.setattr(Collection, "open", watched_open)
    _followed(live)
    assert collecting == [False] and gc.isenabled()
