"""Ids made from file names follow the API's rule; leftover files of killed writers go."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.data.files import collect_items
from crossmodal.engine import Collection
from crossmodal.index.manifest import Manifest
from crossmodal.item_ids import normal_item_id
from crossmodal.storage import LEFTOVER_GRACE_S
from tests.image_helpers import write_image

# Names a file system takes but no id lookup can name: the API and `remove` strip or refuse.
UNADDRESSABLE = ["new\nline.jpg", "tab\tx.jpg", " lead.jpg", " dir/in.jpg"]


def _invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


@pytest.fixture
def odd_names(tmp_path):
    root = tmp_path / "photos"
    for number, name in enumerate([*UNADDRESSABLE, "ok.jpg", "sub/in space.jpg"]):
        write_image(root / name, (20 * number, 10, 10))
    return root


def test_files_an_id_cannot_name_are_skipped_with_the_reason(odd_names):
    report = collect_items([odd_names])
    assert sorted(item.id for item in report.items) == ["ok.jpg", "sub/in space.jpg"]
    skipped = {os.path.relpath(path, odd_names): why for path, why in report.skipped_files}
    assert sorted(skipped) == sorted(UNADDRESSABLE)
    assert "control character" in skipped["new\nline.jpg"]
    assert "control character" in skipped["tab\tx.jpg"]
    assert "'lead.jpg'" in skipped[" lead.jpg"] and "rename the file" in skipped[" lead.jpg"]
    # A single file given by name follows the same rule.
    assert collect_items([odd_names / " lead.jpg"]).items == []


def test_every_id_the_cli_indexes_can_be_removed(tmp_path, odd_names, fake_encoder):
    index = tmp_path / "idx"
    result = _invoke("index", odd_names, "--into", index, "--model", "fake:colours", "--quiet")
    assert "indexed 2 new" in result.stdout
    assert f"skipped {len(UNADDRESSABLE)} files:" in result.stderr
    assert ascii(str(odd_names / "new\nline.jpg")) in result.stderr  # one line per skip
    ids = [item["id"] for item in Collection.open(index).items]
    assert all(normal_item_id(item_id) == item_id for item_id in ids)
    assert "removed 2 items; 0 remain" in _invoke("remove", index, *ids).stdout


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _colour_index(path, encoder, count: int = 3) -> Collection:
    collection = Collection.create(path, model="fake:colours", encoder=encoder)
    vectors = encoder.encode_texts(["red", "green", "blue", "grey"][:count])
    collection.add_vectors([{"id": f"{i}.jpg", "path": f"/p/{i}.jpg"} for i in range(count)],
                           vectors)
    return collection


def test_a_commit_removes_what_a_killed_generation_write_left(tmp_path, fake_encoder,
                                                               monkeypatch):
    index = tmp_path / "idx"
    collection = _colour_index(index, fake_encoder)
    before = set(os.listdir(index))

    def killed(self, folder):  # dies just before the commit point: new files, old manifest
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr("crossmodal.index.manifest.Manifest.save", killed)
        # kill -9 skips the clean-up a failed write does in-process
        patch.setattr("crossmodal.collection.commits._remove_unfinished", lambda *args: None)
        with pytest.raises(KeyboardInterrupt):
            collection.compact()
    left = set(os.listdir(index)) - before
    assert any(name.endswith(".npy") for name in left), left
    (index / ".items.000009.json.x1y2.tmp").write_text("{")  # an atomic write cut short
    left.add(".items.000009.json.x1y2.tmp")
    for name in left:
        _age(index / name, 2 * 3600)
    for name in before:  # named files are never removed, however old
        _age(index / name, 10 * 3600)
    (index / "notes.txt").write_text("mine")  # not a file the index writes
    _age(index / "notes.txt", 10 * 3600)

    writer = Collection.open(index, encoder=fake_encoder)
    writer.add_vectors([{"id": "new.jpg", "path": "/p/new.jpg"}],
                       fake_encoder.encode_texts(["red"]))
    assert writer.stats()["log"]["commits"] >= 1  # a log record, not a new generation
    assert not left & set(os.listdir(index))
    assert before | {"notes.txt"} <= set(os.listdir(index))
    assert Manifest.load(index).verify(index) == []
    assert len(Collection.open(index, encoder=fake_encoder)) == 4


def test_young_leftovers_stay_until_their_grace_period_ends(tmp_path, fake_encoder):
    index = tmp_path / "idx"
    collection = _colour_index(index, fake_encoder)
    young, old = index / "images.000042.npy", index / ".texts.000042.npy.abc.tmp"
    young.write_bytes(b"in flight")
    old.write_bytes(b"dead")
    _age(old, LEFTOVER_GRACE_S + 60)
    collection.remove(["0.jpg"])
    assert young.exists() and not old.exists()
    collection.compact()  # a new generation: its predecessor goes, young leftovers stay
    assert young.exists()
    _age(young, LEFTOVER_GRACE_S + 60)
    collection.remove(["1.jpg"])
    assert not young.exists()


def test_no_response_names_a_server_path(tmp_path, colour_folder, fake_encoder, monkeypatch):
    pytest.importorskip("fastapi")
    from crossmodal.errors import IndexCorruptError
    from crossmodal.serve import ServeSettings, create_app
    from tests.serve_helpers import build_index, local_client

    index = build_index(tmp_path, colour_folder, fake_encoder)
    app = create_app(index, ServeSettings(), encoder=fake_encoder)
    client = local_client(app)
    (colour_folder / "red.jpg").unlink()
    (colour_folder / "red.jpg").mkdir()  # the image replaced by a folder
    response = client.get("/api/thumbnails/red.jpg")
    assert response.status_code == 404
    assert "cannot be read" in response.json()["detail"]
    assert str(tmp_path) not in response.text

    def damaged(item_id):  # any error built from an OSError or naming the index folder
        try:
            (index / "items.000001.json" / "x").read_bytes()
        except OSError as exc:
            raise IndexCorruptError(f"{index.resolve()}/wal.000001.log: {exc}") from exc
    monkeypatch.setattr(app.state.live, "item", damaged)
    response = client.get("/api/items/green.png")
    assert response.status_code == 503, response.text
    assert str(tmp_path) not in response.text
    assert "the index/wal.000001.log" in response.json()["detail"]


def test_an_image_the_system_refuses_is_described_without_its_path(tmp_path):
    from crossmodal.data.images import ImageLoadError, load_image

    (tmp_path / "p00.jpg").mkdir()  # a folder, a symlink loop, a dangling link
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    for name in ("p00.jpg", "loop.jpg", "gone.jpg"):
        with pytest.raises(ImageLoadError) as caught:
            load_image(tmp_path / name)
        assert str(tmp_path) not in str(caught.value), caught.value


def test_an_id_indexed_before_the_rule_can_be_removed_by_its_exact_spelling(tmp_path,
                                                                            fake_encoder):
    index = tmp_path / "idx"
    old = Collection.create(index, model="fake:colours", encoder=fake_encoder)
    odd = ["new\nline.jpg", " lead.jpg"]
    old.add_vectors([{"id": item_id, "path": f"/p/{item_id}"} for item_id in odd],
                    fake_encoder.encode_texts(["red", "green"]))
    assert "removed 2 items; 0 remain" in _invoke("remove", index, *odd).stdout
