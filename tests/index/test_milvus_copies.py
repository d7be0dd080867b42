"""A `cp -r` copy of an index whose vectors are on a Milvus server: searchable while current,
refused (one line, --verify fails) once the original has committed since. Real server."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from crossmodal.errors import IndexCorruptError


@pytest.fixture
def server_store(milvus_server_uri):
    yield f"milvus:{milvus_server_uri()}"
    from crossmodal.index.milvus_store import CLIENTS

    CLIENTS.release_all()


def test_a_copy_the_original_moved_on_from_is_refused_not_wrong(tmp_path, colour_folder,
                                                                 fake_encoder, server_store,
                                                                 monkeypatch):
    monkeypatch.setattr("crossmodal.index.milvus_store._FRESH_CHECK_S", 0.0)
    index, copy = tmp_path / "index", tmp_path / "copy"
    original = Collection.create(index, model="fake:colours", encoder=fake_encoder,
                                 store=server_store)
    original.add_paths([colour_folder], progress=False)
    shutil.copytree(index, copy)
    reader = Collection.open(copy, encoder=fake_encoder)  # a copy of the latest: it reads
    assert reader.search_text("red", k=1)[0].id == "red.jpg"
    assert len(reader.search_like("red.jpg", k=9)) == 3

    assert original.remove(["red.jpg"]) == []  # the original moves on
    original.add_vectors([{"id": "grey.jpg", "path": "/p/grey.jpg"}],
                         fake_encoder.encode_texts(["grey"]))
    stale = f"{copy.resolve()} is a stale copy of {index.resolve()}"
    with pytest.raises(IndexCorruptError, match=stale):  # a reader opened before
        reader.search_text("red", k=100)
    with pytest.raises(IndexCorruptError, match=stale):
        reader.search_like("red.jpg")
    reader.close()
    with pytest.raises(IndexCorruptError, match=stale):  # and one opened after
        Collection.open(copy, encoder=fake_encoder)

    runner = CliRunner()
    searched = runner.invoke(cli, ["search", str(copy), "red"])
    assert searched.exit_code == 2 and searched.output.startswith(f"error: {stale}")
    assert searched.output.count("\n") == 1, searched.output
    verified = runner.invoke(cli, ["info", str(copy), "--verify"])
    assert verified.exit_code == 1, verified.output
    assert json.loads(verified.output)["verified"] is False
    assert "stale copy" in json.loads(verified.output)["error"]

    assert [h.id for h in original.search_text("red", k=100)] != []  # the original is fine
    assert len(Collection.open(index, encoder=fake_encoder)) == 4
    original.close()
    assert runner.invoke(cli, ["drop", str(copy), "--yes"]).exit_code == 0
