"""Searches keep answering, consistently, while another thread adds and removes items."""

from __future__ import annotations

import threading

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
                snapshot = live.snapshot
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
    final = live.snapshot
    assert len(final) == 4 + 3
    assert sorted(i for i in (h.id for h in final.search_text("sun", k=20)) if "new/" in i) == [
        "new/1.png", "new/3.png", "new/5.png"]
    # What a fresh process sees on disk is the same as the last published snapshot.
    assert len(LiveCollection(final.path, fake_encoder).snapshot) == 7
    # Removed uploads leave no image behind; kept ones are under the index's uploads folder.
    assert len(list(live.uploads.iterdir())) == 3


def test_changes_by_another_process_are_picked_up(tmp_path, colour_folder, fake_encoder):
    from crossmodal.engine import Collection
    from tests.image_helpers import write_image

    path = build_index(tmp_path, colour_folder, fake_encoder)
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    old = live.snapshot
    assert "more/pink.png" not in old
    other = Collection.open(path, encoder=fake_encoder)  # as `crossmodal index` would
    other.add_paths([write_image(tmp_path / "more" / "pink.png", (250, 100, 200)).parent],
                    progress=False)
    assert "pink.png" in live.snapshot and len(live.snapshot) == 5
    assert "pink.png" not in old  # a snapshot already handed out never changes
    other.remove(["red.jpg"])
    assert "red.jpg" not in live.snapshot
