"""Searches keep answering, consistently, while another thread adds and removes items."""

from __future__ import annotations

import threading
import time

from crossmodal.collection.commits import disk_stamp
from crossmodal.serve.live import LiveCollection, Upload
from tests.serve_helpers import build_index, png_bytes


def test_searches_see_whole_snapshots_while_items_change(tmp_path, colour_folder, fake_encoder):
    live = LiveCollection(build_index(tmp_path, colour_folder, fake_encoder), fake_encoder)
    stop = threading.Event()
    failures: list[BaseException] = []
    sizes: set[int] = set()
    searches = 0

    def search_forever() -> None:
        nonlocal searches
        try:
            while not stop.is_set():
                with live.reading() as snapshot:
                    images = snapshot.search_text("red", k=50)
                    assert len(images) == len(snapshot)  # every item, none twice, none torn
                    assert len({h.id for h in images}) == len(images)
                    assert all(h.id in snapshot for h in images)
                    texts = snapshot.search_text("yellow", k=50, target="texts")
                    assert len(texts) == len(snapshot.text_rows)
                    for hit in texts:
                        item_id, k = hit.id.split("#")
                        assert snapshot.item(item_id)["captions"][int(k)] == hit.text
                    sizes.add(len(snapshot))
                searches += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    readers = [threading.Thread(target=search_forever) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(6):
            upload = Upload.decode(png_bytes((200, 200, 10 * round_)), 10_000)
            added = live.add_upload(upload, [f"yellow thing {round_}", "sun"], f"new/{round_}.png")
            assert added["id"] == f"new/{round_}.png"
            if round_ % 2:
                live.remove(f"new/{round_ - 1}.png")
    finally:
        stop.set()
        for reader in readers:
            reader.join(10)
    assert not failures, failures[0]
    assert searches > 10 and len(sizes) > 1  # the readers did run across changes
    with live.reading() as final:
        assert len(final) == 4 + 3
    assert sorted(i for i in (h.id for h in live.search_text("sun", k=20)) if "new/" in i) == [
        "new/1.png", "new/3.png", "new/5.png"]
    # What a fresh process sees on disk is the same as what the server holds.
    with LiveCollection(live.path, fake_encoder).reading() as on_disk:
        assert len(on_disk) == 7
    # Removed uploads leave no image behind; kept ones are under the index's uploads folder.
    assert len(list(live.uploads.iterdir())) == 3


def _followed(live: LiveCollection, timeout_s: float = 10.0) -> None:
    """Wait until the server holds what the folder holds (a search notices a new generation;
    a thread of its own loads it)."""
    deadline = time.monotonic() + timeout_s
    while live._collection.stamp() != disk_stamp(live.path):
        assert time.monotonic() < deadline, "the server did not follow the folder"
        with live.reading():
            pass
        with live._writer:  # the follower, if one runs, holds it until it is done
            pass


def test_changes_by_another_process_are_picked_up(tmp_path, colour_folder, fake_encoder):
    from crossmodal.engine import Collection
    from tests.image_helpers import write_image

    path = build_index(tmp_path, colour_folder, fake_encoder)
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    with live.reading() as held:
        assert "more/pink.png" not in held
    other = Collection.open(path, encoder=fake_encoder)  # as `crossmodal index` would
    other.add_paths([write_image(tmp_path / "more" / "pink.png", (250, 100, 200)).parent],
                    progress=False)
    with live.reading() as held:  # a log record: replayed into the server's own index
        assert "pink.png" in held and len(held) == 5
        assert held is live._collection and held is not other
    other.remove(["red.jpg"])  # a new generation (many dead rows): loaded in the background
    _followed(live)
    with live.reading() as after:
        assert "red.jpg" not in after
    other.compact()  # a whole new generation: loaded beside the old one, then swapped in
    live.add_upload(Upload.decode(png_bytes((9, 9, 9)), 10_000), ["grey"], "grey.png")
    on_disk = Collection.open(path, encoder=fake_encoder)
    assert {"pink.png", "grey.png"} <= set(on_disk._row_of) and "red.jpg" not in on_disk
    assert len(on_disk) == 5


def test_a_change_waits_for_searches_under_way_and_holds_back_new_ones(
        tmp_path, colour_folder, fake_encoder):
    live = LiveCollection(build_index(tmp_path, colour_folder, fake_encoder), fake_encoder)
    upload = Upload.decode(png_bytes((1, 200, 30)), 10_000)
    seen: list[int] = []
    done = threading.Event()

    def add() -> None:
        live.add_upload(upload, ["green"], "late.png")
        done.set()

    with live.reading() as held:
        before = len(held)
        writer = threading.Thread(target=add)
        writer.start()
        writer.join(0.5)
        assert not done.is_set()  # the change waits for the lease to end
        seen.append(len(held))  # and the index it holds does not move under it
    writer.join(10)
    assert done.is_set() and seen == [before]
    with live.reading() as after:
        assert len(after) == before + 1
