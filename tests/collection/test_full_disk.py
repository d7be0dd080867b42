"""A full disk never costs an acknowledged change, and never shows an unacknowledged one.

The disk is filled by fault injection (tests.fault_helpers: ENOSPC from fsync or a short write, for
the files under the index folder) for the engine, the server (upload, delete) and the CLI
(index, remove); one test also uses a real 8 MiB tmpfs where mounting is allowed. Each checks
the memory of the writer right after the failure, a retry once the disk frees, and what a
fresh open reads from the folder.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.collection import commits as generations
from crossmodal.engine import Collection
from crossmodal.errors import IndexWriteError
from tests.fault_helpers import FullDisk, fill, needs_proc, small_tmpfs
from tests.image_helpers import write_image
from tests.serve_helpers import build_index, local_client, png_bytes

pytestmark = pytest.mark.usefixtures("fake_encoder")

# (which commit fails, how the disk says it is full)
FAULTS = [("log", "fsync"), ("log", "write"), ("generation", "fsync")]


@pytest.fixture(autouse=True)
def _proc():
    needs_proc()


def _commit_kind(monkeypatch, commit: str) -> None:
    if commit == "generation":  # every commit writes a whole new generation
        monkeypatch.setattr(generations, "WAL_SHARE", 0.0)
        monkeypatch.setattr(generations, "WAL_MIN_BYTES", 0)


def files(path) -> dict[str, int]:
    """The folder's files and their sizes (a failed commit leaves them as they were)."""
    return {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}


def state(col: Collection) -> tuple:
    """What a reader can see: items with their captions, and what searches return."""
    hits = col.search_text("red", k=50)
    assert len(hits) == len(col)  # stores and item list agree
    captions = col.search_text("red", k=50, target="texts")
    assert len(captions) == len(col.text_rows)
    return (sorted((i["id"], tuple(i["captions"])) for i in col.items),
            sorted(h.id for h in hits), sorted(h.id for h in captions))


@pytest.mark.parametrize("commit,mode", FAULTS)
def test_engine_keeps_only_what_was_written(tmp_path, colour_folder, fake_encoder, monkeypatch,
                                            commit, mode):
    _commit_kind(monkeypatch, commit)
    path = build_index(tmp_path, colour_folder, fake_encoder)
    col = Collection.open(path, encoder=fake_encoder)
    before, written = state(col), files(path)
    disk = FullDisk(monkeypatch, path, mode)
    vectors = fake_encoder.encode_texts(["pink pink"])
    item = {"id": "new.png", "path": str(tmp_path / "new.png"), "captions": ["pink pink"]}
    with disk.filled():
        with pytest.raises(IndexWriteError, match=r"the disk is full \(.*\); nothing was"):
            col.add_vectors([item], vectors, vectors)
        assert disk.failures and "new.png" not in col and state(col) == before
        with pytest.raises(IndexWriteError, match="disk is full"):
            col.remove(["red.jpg"])
        assert "red.jpg" in col and state(col) == before
        assert state(Collection.open(path, encoder=fake_encoder)) == before
        assert files(path) == written  # no torn record, no unfinished generation's files
    assert col.add_vectors([item], vectors, vectors) == []  # the retry, once there is room
    assert col.remove(["red.jpg"]) == []
    after = state(col)
    assert "new.png" in col and "red.jpg" not in col
    assert state(Collection.open(path, encoder=fake_encoder)) == after


@pytest.mark.parametrize("commit", ["log", "generation"])
def test_a_failure_at_any_file_of_a_commit_changes_nothing(tmp_path, colour_folder,
                                                          fake_encoder, monkeypatch, commit):
    """The disk fills at the 1st, 2nd, ... fsync of a commit (a new generation writes vectors,
    items, a log and the manifest): memory and folder stay at the last commit each time."""
    _commit_kind(monkeypatch, commit)
    path = build_index(tmp_path, colour_folder, fake_encoder)
    col = Collection.open(path, encoder=fake_encoder)
    disk = FullDisk(monkeypatch, path, "fsync")
    vectors = fake_encoder.encode_texts(["pink"])
    for allow in range(12):
        before, written = state(col), files(path)
        item = {"id": f"new{allow}.png", "path": "x.png", "captions": ["pink"]}
        with disk.filled(allow):
            try:
                col.add_vectors([item], vectors, vectors)
            except IndexWriteError:
                assert state(col) == before and files(path) == written
                assert state(Collection.open(path, encoder=fake_encoder)) == before
                continue
        assert f"new{allow}.png" in Collection.open(path, encoder=fake_encoder)
        break  # the commit needed fewer fsyncs than allowed: every point was tried
    assert allow >= (4 if commit == "generation" else 1)


def test_a_record_whose_fsync_failed_is_cut_off_the_log(tmp_path, colour_folder, fake_encoder,
                                                        monkeypatch):
    """fsync failing after the whole record was written: no reader may take it for a commit."""
    path = build_index(tmp_path, colour_folder, fake_encoder)
    col = Collection.open(path, encoder=fake_encoder)
    log = path / col.manifest.log
    size = log.stat().st_size
    with FullDisk(monkeypatch, path, "fsync").filled(), pytest.raises(IndexWriteError):
        col.remove(["red.jpg"])
    assert log.stat().st_size == size
    assert "red.jpg" in Collection.open(path, encoder=fake_encoder)


# --- the server --------------------------------------------------------------------------
def _app(path, encoder):
    from crossmodal.serve import ServeSettings, create_app

    return local_client(create_app(path, ServeSettings(), encoder=encoder),
                        raise_server_exceptions=False)


def _upload(client, colour, item_id, captions=("pink thing",)):
    return client.post("/api/items", files={"file": ("x.png", png_bytes(colour), "image/png")},
                       data={"captions": "\n".join(captions), "id": item_id})


@pytest.mark.parametrize("fails", ["image", "commit"])
@pytest.mark.parametrize("commit,mode", FAULTS)
def test_server_upload_and_delete_on_a_full_disk(tmp_path, colour_folder, fake_encoder,
                                                 monkeypatch, commit, mode, fails):
    """`fails`: storing the uploaded image fails, or (the image stored) committing its item."""
    pytest.importorskip("fastapi")
    _commit_kind(monkeypatch, commit)
    path = build_index(tmp_path, colour_folder, fake_encoder)
    client = _app(path, fake_encoder)
    disk = FullDisk(monkeypatch, path, mode, spare=path / "uploads" if fails == "commit"
                    else None)
    with disk.filled():
        failed = _upload(client, (250, 100, 200), "new/pink.png")
        assert failed.status_code == 507, failed.text
        assert "disk is full" in failed.json()["detail"] and str(path) not in failed.text
        assert client.get("/api/items/new/pink.png").status_code == 404
        assert "new/pink.png" not in [h["id"] for h in client.post(
            "/api/search/text", json={"query": "pink", "k": 10}).json()["hits"]]
        deleted = client.delete("/api/items/red.jpg")
        assert deleted.status_code == 507, deleted.text
        assert client.get("/api/items/red.jpg").status_code == 200
        assert client.get("/api/stats").json()["items"] == 4
    restarted = _app(path, fake_encoder)  # what was acknowledged: nothing
    assert restarted.get("/api/items/new/pink.png").status_code == 404
    assert restarted.get("/api/items/red.jpg").status_code == 200
    assert not (path / "uploads").exists() or not list((path / "uploads").iterdir())
    # Once there is room the same requests succeed (not "already indexed").
    assert _upload(client, (250, 100, 200), "new/pink.png").status_code == 201
    assert client.delete("/api/items/red.jpg").status_code == 200
    restarted = _app(path, fake_encoder)
    assert restarted.get("/api/items/new/pink.png").status_code == 200
    assert restarted.get("/api/items/red.jpg").status_code == 404
    thumb = restarted.get("/api/thumbnails/new/pink.png")
    assert thumb.status_code == 200


def test_server_on_a_real_full_tmpfs(tmp_path, colour_folder, fake_encoder):
    """The issue's repro: an 8 MiB tmpfs filled to ~20 KB free, an upload with 20 long
    captions (its log record needs more than what is left)."""
    pytest.importorskip("fastapi")
    with small_tmpfs(tmp_path / "small") as small:
        path = build_index(small, colour_folder, fake_encoder)
        client = _app(path, fake_encoder)
        filler = fill(small, 20_000)
        long_captions = [f"pink {'word ' * 190}{n}" for n in range(20)]  # 19 KB: the cap
        failed = _upload(client, (250, 100, 200), "new/pink.png", long_captions)
        assert failed.status_code == 507, failed.text
        assert client.get("/api/items/new/pink.png").status_code == 404
        assert client.delete("/api/items/red.jpg").status_code in (200, 507)
        held_red = client.get("/api/items/red.jpg").status_code
        filler.unlink()
        retried = _upload(client, (250, 100, 200), "new/pink.png", long_captions)
        assert retried.status_code == 201, retried.text
        restarted = _app(path, fake_encoder)
        assert restarted.get("/api/items/new/pink.png").status_code == 200
        assert restarted.get("/api/items/red.jpg").status_code == held_red


# --- the CLI -----------------------------------------------------------------------------
def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("commit,mode", FAULTS)
def test_cli_index_and_remove_on_a_full_disk(tmp_path, colour_folder, fake_encoder,
                                             monkeypatch, commit, mode):
    _commit_kind(monkeypatch, commit)
    path = build_index(tmp_path, colour_folder, fake_encoder)
    before = state(Collection.open(path, encoder=fake_encoder))
    write_image(tmp_path / "more" / "pink.png", (250, 100, 200))
    disk = FullDisk(monkeypatch, path, mode)
    with disk.filled():
        for args in (("index", tmp_path / "more", "--into", path, "--quiet"),
                     ("remove", path, "red.jpg")):
            result = _cli(*args)
            assert result.exit_code != 0
            lines = result.output.strip().splitlines()
            assert lines[-1].startswith("error: the disk is full (") and \
                lines[-1].endswith("nothing was changed"), result.output
            assert "Traceback" not in result.output and not isinstance(
                result.exception, OSError)
    verified = json.loads(_cli("info", path, "--verify").output)
    assert verified["verified"] is True and verified["items"] == 4
    assert state(Collection.open(path, encoder=fake_encoder)) == before
    assert _cli("index", tmp_path / "more", "--into", path, "--quiet").exit_code == 0
    assert _cli("remove", path, "red.jpg").exit_code == 0
    after = Collection.open(path, encoder=fake_encoder)
    assert "pink.png" in after and "red.jpg" not in after


def test_cli_index_into_a_new_folder_on_a_full_disk_leaves_no_folder(tmp_path, colour_folder,
                                                                    fake_encoder, monkeypatch):
    path = tmp_path / "new-index"
    with FullDisk(monkeypatch, tmp_path, "fsync").filled():
        result = _cli("index", colour_folder, "--into", path, "--model", "fake:colours",
                      "--quiet")
    assert result.exit_code != 0 and "the disk is full" in result.output
    assert "Traceback" not in result.output and not path.exists()
    assert _cli("index", colour_folder, "--into", path, "--model", "fake:colours",
                "--quiet").exit_code == 0


def test_a_later_batch_that_fails_says_what_was_kept(tmp_path, colour_folder, fake_encoder,
                                                      monkeypatch):
    """`index` commits every N items: a failure after the first commits must not claim that
    nothing changed."""
    path = build_index(tmp_path, colour_folder, fake_encoder)
    more = tmp_path / "more"
    for n in range(4):
        write_image(more / f"p{n}.png", (40 * n, 100, 200))
    col = Collection.open(path, encoder=fake_encoder)
    disk = FullDisk(monkeypatch, path, "fsync")
    real_apply = col.apply_embedded

    def apply_then_fill(*args, **kwargs):
        real_apply(*args, **kwargs)
        disk.full = True  # the disk fills after the first batch was committed

    monkeypatch.setattr(col, "apply_embedded", apply_then_fill)
    with pytest.raises(IndexWriteError) as raised:
        col.add_paths([more], batch_size=2, commit_every=2, progress=False)
    disk.full = False
    assert "nothing was changed" not in str(raised.value)
    assert "2 items indexed before" in str(raised.value)
    reopened = Collection.open(path, encoder=fake_encoder)
    assert len(reopened) == 4 + 2
    assert np.isfinite(reopened.images.vectors).all()


def test_an_io_error_is_a_503_and_a_failed_undo_shows_nothing_unwritten(
        tmp_path, colour_folder, fake_encoder, monkeypatch):
    """EIO instead of ENOSPC: 503, not 507. And when even reading the folder back fails after
    the failed write, the server answers 503 rather than show the unwritten item; once the
    folder reads again it serves the last commit."""
    pytest.importorskip("fastapi")
    path = build_index(tmp_path, colour_folder, fake_encoder)
    client = _app(path, fake_encoder)
    disk = FullDisk(monkeypatch, path, "fsync", spare=path / "uploads", error=errno.EIO)
    with disk.filled():
        failed = _upload(client, (250, 100, 200), "new/pink.png")
        assert failed.status_code == 503 and "could not write the index" in failed.text
        assert "nothing was changed" in failed.text
    assert client.get("/api/items/new/pink.png").status_code == 404
    real_load = Collection._load.__func__
    unreadable = {"on": True}

    def load(cls, *args, **kwargs):
        if unreadable["on"]:
            raise OSError(errno.EIO, "Input/output error")
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(Collection, "_load", classmethod(load))
    with disk.filled():
        assert _upload(client, (250, 100, 200), "new/pink.png").status_code == 503
    assert client.get("/api/items/new/pink.png").status_code == 503  # not a 200
    assert client.get("/api/items/red.jpg").status_code == 503
    unreadable["on"] = False
    assert client.get("/api/items/new/pink.png").status_code == 404
    assert client.get("/api/items/red.jpg").status_code == 200
    assert _upload(client, (250, 100, 200), "new/pink.png").status_code == 201


def test_a_server_that_read_a_record_later_cut_off_drops_it(tmp_path, colour_folder,
                                                            fake_encoder, monkeypatch):
    """Another process's log record is whole in the file when this server replays it, then
    its fsync fails and its writer cuts it off: the server must go back to the last commit."""
    from crossmodal.serve.live import LiveCollection

    path = build_index(tmp_path, colour_folder, fake_encoder)
    live = LiveCollection(path, fake_encoder, refresh_s=0)
    writer = Collection.open(path, encoder=fake_encoder)
    seen: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if not seen and os.readlink(f"/proc/self/fd/{fd}").endswith(".log"):
            with live.reading() as held:  # the record is in the file: the server replays it
                seen.append("new.png" in held)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    vectors = fake_encoder.encode_texts(["pink"])
    item = {"id": "new.png", "path": "new.png", "captions": ["pink"]}
    with pytest.raises(IndexWriteError):
        writer.add_vectors([item], vectors, vectors)
    assert seen == [True]  # the window this test is about: the server did apply it
    with live.reading() as held:
        assert "new.png" not in held and len(held) == 4
    assert writer.add_vectors([item], vectors, vectors) == []
    with live.reading() as held:
        assert "new.png" in held and len(held) == 5
