"""A folder that stays indexed: a real watchdog observer on a real folder changing under it.

Each test changes files the way people's tools do (a save, a rename into place, a folder
moved in, a delete) and waits, polling with a timeout, for the batch that applies it; then
checks the index on disk, opened afresh.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crossmodal.collection.folder_sync import BatchReport, Change, FolderSync
from crossmodal.collection.watch import FolderWatch
from crossmodal.engine import Collection
from tests.image_helpers import write_image

TIMEOUT_S = 15.0


class Watching:
    """A FolderWatch running in a thread, its batch reports kept in order."""

    def __init__(self, collection: Collection, root: Path, **timing):
        self.reports: list[BatchReport] = []
        self.changed = threading.Condition()
        timing = {"quiet_s": 0.1, "settle_s": 0.05, **timing}
        self.watch = FolderWatch(collection, root, self._on_batch, **timing)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.wait_for(lambda: self.reports, "the startup rescan")

    def _run(self) -> None:
        try:
            self.watch.run()
        except BaseException as exc:  # noqa: BLE001 - the test says what it was
            self.errors.append(exc)

    def _on_batch(self, report: BatchReport) -> None:
        with self.changed:
            self.reports.append(report)
            self.changed.notify_all()

    def wait_for(self, condition: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        with self.changed:
            while not condition():
                assert not self.errors, self.errors
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}: {self.reports}"
                self.changed.wait(min(left, 0.05))

    def applied(self, start: int) -> BatchReport:
        """Everything the batches since report number `start` did, as one report."""
        total = BatchReport()
        for report in self.reports[start:]:
            for name in ("added", "updated", "removed", "renamed", "skipped"):
                getattr(total, name).extend(getattr(report, name))
        return total

    def stop(self) -> None:
        self.watch.stop()
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


@pytest.fixture
def watched(tmp_path, colour_folder, fake_encoder):
    """An index of colour_folder being watched; the Watching object (stopped after)."""
    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)
    watching = Watching(collection, colour_folder)
    yield watching
    watching.stop()


def on_disk(watching: Watching) -> Collection:
    return Collection.open(watching.watch.sync.collection.path,
                           encoder=watching.watch.sync.collection.encoder)


def test_additions_changes_and_deletions_are_followed(watched, colour_folder, fake_encoder):
    start = len(watched.reports)
    write_image(colour_folder / "new.png", (200, 200, 0))
    (colour_folder / "new.txt").write_text("yellow thing\n", encoding="utf-8")
    write_image(colour_folder / "red.jpg", (10, 10, 240))  # edited in place: now blue
    (colour_folder / "green.png").unlink()
    watched.wait_for(lambda: sorted(watched.applied(start).removed) == ["green.png"]
                     and "new.png" in watched.applied(start).added
                     and "red.jpg" in watched.applied(start).updated, "the changes")
    collection = on_disk(watched)
    assert sorted(collection._row_of) == ["new.png", "nocaption.bmp", "red.jpg",
                                          "sub/blue.webp"]
    assert collection.item("new.png")["captions"] == ["yellow thing"]
    assert collection.search_text("blue", k=1)[0].item_id in ("red.jpg", "sub/blue.webp")
    assert collection.search_image(colour_folder / "red.jpg", k=1)[0].item_id == "red.jpg"


def test_a_rename_keeps_the_vectors_and_a_folder_moved_in_is_indexed(
        watched, colour_folder, tmp_path, fake_encoder):
    start, embedded = len(watched.reports), fake_encoder.images_seen
    before = on_disk(watched)
    vector, _ = before.indexed_query("red.jpg")
    os.rename(colour_folder / "red.jpg", colour_folder / "crimson.jpg")
    os.rename(colour_folder / "red.txt", colour_folder / "crimson.txt")
    watched.wait_for(lambda: watched.applied(start).renamed, "the rename")
    assert watched.applied(start).renamed == [("red.jpg", "crimson.jpg")]
    assert fake_encoder.images_seen == embedded, "a renamed file was embedded again"
    collection = on_disk(watched)
    assert "red.jpg" not in collection
    assert collection.item("crimson.jpg")["captions"] == ["a red square", "red thing"]
    assert (collection.indexed_query("crimson.jpg")[0] == vector).all()
    assert collection.search_text("red thing", k=1, target="texts")[0].item_id == "crimson.jpg"

    outside = tmp_path / "card"  # a memory card's folder, moved into the watched one
    write_image(outside / "DCIM" / "IMG_0001.jpg", (250, 250, 250))
    write_image(outside / "DCIM" / "IMG_0002.jpg", (5, 5, 5))
    start = len(watched.reports)
    shutil.move(str(outside), str(colour_folder / "card"))
    expected = ["card/DCIM/IMG_0001.jpg", "card/DCIM/IMG_0002.jpg"]
    watched.wait_for(lambda: sorted(watched.applied(start).added) == expected, "the folder")
    start = len(watched.reports)
    os.rename(colour_folder / "card", colour_folder / "2024")  # a folder renamed: same vectors
    watched.wait_for(lambda: len(watched.applied(start).renamed) == 2, "the folder rename")
    start = len(watched.reports)
    shutil.rmtree(colour_folder / "2024")
    watched.wait_for(lambda: len(watched.applied(start).removed) == 2, "the folder removal")
    assert not any(i.startswith(("card/", "2024/")) for i in on_disk(watched)._row_of)


def test_copies_of_one_photo_renamed_together_keep_their_own_names(
        watched, colour_folder, fake_encoder):
    start = len(watched.reports)
    for name in ("a.png", "b.png", "c.png"):  # the same bytes three times
        write_image(colour_folder / "copies" / name, (40, 40, 40))
    watched.wait_for(lambda: len(watched.applied(start).added) == 3, "the copies")
    start, embedded = len(watched.reports), fake_encoder.images_seen
    os.rename(colour_folder / "copies", colour_folder / "kept")
    watched.wait_for(lambda: len(watched.applied(start).renamed) == 3, "the rename")
    assert sorted(watched.applied(start).renamed) == [
        (f"copies/{n}", f"kept/{n}") for n in ("a.png", "b.png", "c.png")]
    assert watched.applied(start).removed == watched.applied(start).added == []
    assert fake_encoder.images_seen == embedded


def test_a_temp_file_renamed_into_place_is_read_once_whole(watched, colour_folder):
    start = len(watched.reports)
    temp = colour_folder / ".photo.jpg.part"  # hidden, as editors and rsync name them
    write_image(temp, (0, 200, 200), fmt="JPEG")
    os.rename(temp, colour_folder / "photo.jpg")
    watched.wait_for(lambda: "photo.jpg" in watched.applied(start).added, "the photo")
    assert watched.applied(start).skipped == []
    assert on_disk(watched).item("photo.jpg")["bytes"] == (colour_folder / "photo.jpg").stat(
        ).st_size


def test_a_file_still_being_written_waits_for_its_writer(watched, colour_folder, tmp_path):
    whole = write_image(tmp_path / "whole.png", (90, 30, 200), size=(400, 300)).read_bytes()
    start = len(watched.reports)
    with open(colour_folder / "slow.png", "wb") as handle:  # a copy that pauses half-way
        handle.write(whole[: len(whole) // 2])
        handle.flush()
        time.sleep(0.6)  # quiet and unchanged for longer than quiet_s + settle_s
        assert "slow.png" not in on_disk(watched), "read while its writer held it open"
        handle.write(whole[len(whole) // 2:])
    watched.wait_for(lambda: "slow.png" in watched.applied(start).added, "the whole file")
    assert watched.applied(start).skipped == []
    assert on_disk(watched).item("slow.png")["bytes"] == len(whole)


def test_bad_files_are_reported_skips_and_the_watch_goes_on(watched, colour_folder):
    start = len(watched.reports)
    (colour_folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (colour_folder / "notes.md").write_text("shopping list\n", encoding="utf-8")
    watched.wait_for(lambda: len(watched.applied(start).skipped) == 2, "the skips")
    reasons = dict(watched.applied(start).skipped)
    assert reasons[str(colour_folder / "notes.md")] == "not an image file"
    assert "broken.jpg" in " ".join(reasons)
    start = len(watched.reports)
    write_image(colour_folder / "after.png", (1, 2, 3))
    watched.wait_for(lambda: "after.png" in watched.applied(start).added, "the next file")
    assert "broken.jpg" not in on_disk(watched)


def test_a_burst_is_one_batch(watched, colour_folder, tmp_path):
    photos = [write_image(tmp_path / f"{n:02d}.png", (n * 10, 0, 0)).read_bytes()
              for n in range(20)]
    start = len(watched.reports)
    (colour_folder / "burst").mkdir()
    for n, data in enumerate(photos):  # encoded beforehand: the burst is the writes only
        (colour_folder / "burst" / f"{n:02d}.png").write_bytes(data)
    watched.wait_for(lambda: len(watched.applied(start).added) == 20, "the burst")
    assert len(watched.reports) - start <= 2  # one, or two if the folder settled first


def test_another_writer_is_not_undone(watched, colour_folder, fake_encoder):
    """Items another writer adds (a server's uploads) are not the folder's: never removed,
    and the watch's commits go on top of theirs."""
    other = Collection.open(watched.watch.sync.collection.path, encoder=fake_encoder)
    vector = fake_encoder.encode_texts(["red"])
    other.add_vectors([{"id": "uploads/x.png", "path": "/elsewhere/x.png"}], vector)
    start = len(watched.reports)
    shutil.rmtree(colour_folder / "sub")
    write_image(colour_folder / "one.png", (3, 3, 3))
    watched.wait_for(lambda: watched.applied(start).removed == ["sub/blue.webp"]
                     and watched.applied(start).added == ["one.png"], "the changes")
    watched.watch.sync.apply([], set())  # nothing changed: nothing removed either
    assert "uploads/x.png" in on_disk(watched)


def test_a_restart_catches_up_with_what_changed_meanwhile(tmp_path, colour_folder,
                                                          fake_encoder):
    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)
    (colour_folder / "green.png").unlink()  # while nothing watched
    os.rename(colour_folder / "sub", colour_folder / "blue")
    write_image(colour_folder / "late.png", (7, 7, 7))
    watching = Watching(Collection.open(index, encoder=fake_encoder), colour_folder)
    try:
        first = watching.reports[0]
        assert first.removed == ["green.png"]
        assert first.added == ["late.png"]
        assert first.renamed == [("sub/blue.webp", "blue/blue.webp")]
        assert sorted(Collection.open(index, encoder=fake_encoder)._row_of) == [
            "blue/blue.webp", "late.png", "nocaption.bmp", "red.jpg"]
    finally:
        watching.stop()


def test_a_folder_that_disappears_stops_the_watch_without_emptying_the_index(
        tmp_path, colour_folder, fake_encoder):
    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)
    watching = Watching(collection, colour_folder)
    shutil.rmtree(colour_folder)  # an unmounted card looks the same
    watching.thread.join(TIMEOUT_S)
    assert not watching.thread.is_alive()
    assert watching.errors and "is gone" in str(watching.errors[0])
    assert len(Collection.open(index, encoder=fake_encoder)) == 4


def test_without_inotify_watches_the_folder_is_polled(tmp_path, colour_folder, fake_encoder,
                                                      monkeypatch):
    from crossmodal.collection import watch

    class NoWatchesLeft(watch.Observer):
        def start(self) -> None:
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watch, "Observer", NoWatchesLeft)
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    watching = Watching(collection, colour_folder)
    try:
        assert watching.watch.polling
        start = len(watching.reports)
        write_image(colour_folder / "polled.png", (9, 90, 9))
        watching.wait_for(lambda: "polled.png" in watching.applied(start).added, "the file")
    finally:
        watching.stop()


def test_captions_files_apply_to_files_as_they_come(tmp_path, colour_folder, fake_encoder):
    captions = tmp_path / "captions.tsv"
    captions.write_text("red.jpg\tcrimson from the list\nsub/later.png\ta later photo\n",
                        encoding="utf-8")
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    collection.add_paths([colour_folder], [captions], progress=False)
    watching = Watching(collection, colour_folder, caption_files=[captions])
    try:
        first = watching.reports[0]  # the same captions: nothing to redo
        assert (first.added, first.updated, first.removed) == ([], [], [])
        start = len(watching.reports)
        write_image(colour_folder / "sub" / "later.png", (100, 0, 100))
        watching.wait_for(lambda: "sub/later.png" in watching.applied(start).added, "it")
        held = on_disk(watching)
        assert held.item("sub/later.png")["captions"] == ["a later photo"]
        assert held.item("red.jpg")["captions"] == ["a red square", "red thing",
                                                    "crimson from the list"]
    finally:
        watching.stop()


def test_a_folder_that_cannot_be_read_keeps_its_items(tmp_path, colour_folder, fake_encoder,
                                                      monkeypatch):
    """A rescan that cannot read a folder (permissions, a network mount's hiccup) does not
    take it for an emptied one."""
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)
    real_walk = os.walk

    def walk_without_sub(top, onerror=None, **options):  # noqa: ANN001, ANN202
        for folder, dirs, files in real_walk(top, onerror=onerror, **options):
            if "sub" in dirs:
                dirs.remove("sub")
                onerror(PermissionError(13, "Permission denied", os.path.join(folder, "sub")))
            yield folder, dirs, files

    monkeypatch.setattr(os, "walk", walk_without_sub)
    (colour_folder / "green.png").unlink()
    report = FolderSync(collection, colour_folder).apply([Change("", folder=True)])
    assert report.removed == ["green.png"]
    assert "sub/blue.webp" in Collection.open(tmp_path / "index", encoder=fake_encoder)
