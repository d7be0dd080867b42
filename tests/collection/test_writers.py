"""Several writers on one index folder never lose each other's work.

Every change is applied to the latest committed generation under the folder's lock, whoever
else committed since a writer opened the index: another Collection object, the server, or the
`crossmodal index` command in another process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from crossmodal.engine import Collection
from tests.image_helpers import write_image
from tests.paths import REPO
from tests.serve_helpers import build_index, local_client, png_bytes


def photos(folder: Path, n: int, prefix: str) -> Path:
    for i in range(n):
        write_image(folder / f"{prefix}{i:03d}.png", (i * 7 % 256, 200, i * 13 % 256))
        (folder / f"{prefix}{i:03d}.txt").write_text(f"{prefix} photo {i}\n", encoding="utf-8")
    return folder


def opened_before_another_adds(tmp_path, colour_folder, encoder) -> tuple[Path, Collection]:
    """An index and a Collection opened on it before another writer added a000.png."""
    path = build_index(tmp_path, colour_folder, encoder)
    stale = Collection.open(path, encoder=encoder)
    Collection.open(path, encoder=encoder).add_paths(
        [photos(tmp_path / "a", 1, "a")], progress=False)
    return path, stale


def test_a_stale_writer_applies_its_change_to_the_latest_generation(
        tmp_path, colour_folder, fake_encoder):
    path = build_index(tmp_path, colour_folder, fake_encoder)
    first = Collection.open(path, encoder=fake_encoder)
    second = Collection.open(path, encoder=fake_encoder)  # both hold the same generation
    first.add_paths([photos(tmp_path / "a", 3, "a")], progress=False)
    second.add_paths([photos(tmp_path / "b", 2, "b")], progress=False)
    first.remove(["red.jpg"])  # first has not seen b's photos: they must survive its commit
    assert second.remove(["red.jpg", "green.png"]) == ["red.jpg"]  # already gone on disk
    on_disk = Collection.open(path, encoder=fake_encoder)
    assert sorted(on_disk._row_of) == sorted(
        ["nocaption.bmp", "sub/blue.webp", "a000.png", "a001.png", "a002.png",
         "b000.png", "b001.png"])
    assert len(on_disk.text_rows) == len(on_disk.texts) == 1 + 3 + 2
    assert on_disk.manifest.generation == 6  # create, build, a, b, remove, remove: one each
    assert on_disk.manifest.verify(path) == []


def test_add_vectors_refuses_an_id_another_writer_added_meanwhile(
        tmp_path, colour_folder, fake_encoder):
    from crossmodal.errors import BadInputError

    path, stale = opened_before_another_adds(tmp_path, colour_folder, fake_encoder)
    vector = fake_encoder.encode_texts(["red"])
    with pytest.raises(BadInputError, match="already indexed"):
        stale.add_vectors([{"id": "a000.png", "path": "x.png"}], vector)
    assert len(Collection.open(path, encoder=fake_encoder)) == 5


# `crossmodal index` in another process, with a fake model that is slow to load and to run,
# so the server's adds land while it loads, while it embeds and between its commits.
CLI_WRITER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/src"]
    from crossmodal.cli.main import cli
    from crossmodal.models import registry
    from tests.fakes import FakeEncoder

    class SlowEncoder(FakeEncoder):
        def encode_images(self, images):
            time.sleep(0.1)
            return super().encode_images(images)

    def slow_load(name, model_id):
        time.sleep(1.0)  # "loading the model"
        return SlowEncoder()

    registry._BACKENDS["fake"] = slow_load
    cli(["index", sys.argv[2], "--into", sys.argv[3], "--quiet", "--batch-size", "4"])
""")


def test_server_uploads_and_the_cli_indexing_at_once_lose_nothing(
        tmp_path, colour_folder, fake_encoder):
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    from crossmodal.serve import ServeSettings, create_app

    path = build_index(tmp_path, colour_folder, fake_encoder)
    more = photos(tmp_path / "more", 40, "m")
    client = local_client(create_app(path, ServeSettings(rate_per_second=1000, rate_burst=1000),
                                     encoder=fake_encoder))
    cli = subprocess.Popen([sys.executable, "-c", CLI_WRITER, str(REPO), str(more), str(path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acknowledged: list[str] = []

    def upload_until_the_cli_is_done() -> None:
        n = 0
        while cli.poll() is None or n < 15:
            colour = (n % 256, n // 256 % 256, 99)  # distinct bytes: one stored file each
            file = {"file": (f"u{n}.png", png_bytes(colour), "image/png")}
            response = client.post("/api/items", files=file,
                                   data={"captions": f"upload {n}", "id": f"web/u{n:03d}.png"})
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["id"])
            n += 1

    uploader = threading.Thread(target=upload_until_the_cli_is_done)
    uploader.start()
    out, err = cli.communicate(timeout=120)
    uploader.join(60)
    assert cli.returncode == 0, err.decode()[-2000:]
    assert "indexed 40 new" in out.decode()
    on_disk = Collection.open(path, encoder=fake_encoder)
    expected = {f"m{i:03d}.png" for i in range(40)} | set(acknowledged) | {
        "red.jpg", "green.png", "sub/blue.webp", "nocaption.bmp"}
    assert set(on_disk._row_of) == expected, sorted(expected - set(on_disk._row_of))[:10]
    assert len(on_disk.texts) == 4 + 40 + len(acknowledged)
    assert on_disk.manifest.verify(path) == []
    # every stored upload belongs to an indexed item: no orphans
    stored = {p.name for p in (path / "uploads").iterdir()}
    used = {Path(on_disk.item(i)["path"]).name for i in acknowledged}
    assert stored == used and len(stored) == len(acknowledged) >= 15


def test_the_server_removes_upload_files_no_item_refers_to(tmp_path, colour_folder, fake_encoder):
    import os
    import time

    from crossmodal.serve.live import LiveCollection

    path = build_index(tmp_path, colour_folder, fake_encoder)
    uploads = path / "uploads"
    uploads.mkdir()
    orphan, fresh = uploads / "dead.png", uploads / "in-flight.png"
    orphan.write_bytes(png_bytes((1, 2, 3)))
    fresh.write_bytes(png_bytes((3, 2, 1)))
    old = time.time() - 7200
    os.utime(orphan, (old, old))  # a server killed two hours ago left it behind
    live = LiveCollection(path, fake_encoder)
    assert not orphan.exists() and fresh.exists()  # a young file may be another's upload
    live.remove_orphan_uploads(min_age_s=0)
    assert not fresh.exists()


def test_add_vectors_can_skip_ids_another_writer_added_meanwhile(
        tmp_path, colour_folder, fake_encoder):
    path, stale = opened_before_another_adds(tmp_path, colour_folder, fake_encoder)
    items = [{"id": "a000.png", "path": "x.png", "captions": ["one", "two"]},
             {"id": "new.png", "path": "y.png", "captions": ["three"]}]
    vectors = fake_encoder.encode_texts(["red", "blue"])
    skipped = stale.add_vectors(items, vectors, fake_encoder.encode_texts(["1", "2", "green"]),
                                skip_existing=True)
    assert skipped == ["a000.png"]
    on_disk = Collection.open(path, encoder=fake_encoder)
    assert on_disk.item("a000.png")["captions"] == ["a photo 0"]  # the first writer's, kept
    assert on_disk.item("new.png")["captions"] == ["three"]
    assert len(on_disk) == 6 and len(on_disk.texts) == 4 + 1 + 1
    hit = on_disk.search_text("green", k=1, target="texts")[0]
    assert hit.id == "new.png#0"
