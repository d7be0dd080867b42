"""Collections on either store: add, remove, search, filter, reopen, CLI, a crashed writer."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError, IndexMismatchError
from crossmodal.index.manifest import Manifest
from tests.stores import BACKENDS
from tests.stores import milvus_lite_or_skip as _lite_or_skip


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path, milvus_server_uri):
    """The --store value: faiss, Milvus Lite in the index folder, or the session's Milvus
    server. Checks nothing keeps running."""
    if request.param == "faiss":
        yield "faiss"
        return
    from crossmodal.index.milvus_store import CLIENTS

    if request.param == "milvus-server":
        spec = f"milvus:{milvus_server_uri()}"
    else:
        probe = tmp_path / "probe.db"
        _lite_or_skip(probe)
        CLIENTS.release(str(probe))
        spec = "milvus"
    from milvus_lite.server_manager import server_manager_instance as servers

    yield spec
    left_open, left_running = list(CLIENTS._open), list(servers._servers)
    CLIENTS.release_all()
    assert not left_open, "a Milvus client was left open"
    assert not left_running, "a Milvus Lite server was left running"


def backend_of(spec: str) -> str:
    return spec.partition(":")[0]


def test_add_search_filter_remove_reopen(tmp_path, colour_folder, fake_encoder, store):
    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder, store=store)
    collection.add_paths([colour_folder], progress=False)
    assert Manifest.load(index).store["backend"] == backend_of(store)
    assert collection.search_text("red", k=1)[0].id == "red.jpg"

    # Filters by folder, path pattern, modality and date, on images and on captions.
    in_sub = collection.search_text("red", k=4, where="folder = sub")
    assert [h.id for h in in_sub] == ["sub/blue.webp"]
    top_level = collection.search_text("blue", k=4, where='source like "%.png" or name = red.jpg')
    assert {h.id for h in top_level} == {"green.png", "red.jpg"}
    captions = collection.search_text("red", k=9, target="texts", where='folder = "."')
    assert {h.item_id for h in captions} == {"red.jpg", "green.png"}
    assert collection.search_text("red", k=3, where="date < \"1990-01-01\"") == []
    assert len(collection.search_text("red", k=9, where='date >= "1990-01-01"')) == 4
    like = collection.search_like("red.jpg", k=3, where="modality = image and folder != sub")
    assert {h.id for h in like} == {"green.png", "nocaption.bmp"}
    with pytest.raises(BadInputError, match="bad filter"):
        collection.search_text("red", where="folder ==")

    assert collection.remove(["red.jpg"]) == []
    assert "red.jpg" not in {h.id for h in collection.search_text("red", k=9)}
    assert "red.jpg" not in {h.item_id for h in collection.search_text("red", k=9, target="texts")}
    collection.close()
    reopened = Collection.open(index, encoder=fake_encoder)
    assert len(reopened) == 3 and len(reopened.texts) == 2
    assert [h.id for h in reopened.search_text("blue", k=4, where="folder = sub")] == [
        "sub/blue.webp"]
    assert reopened.search_like("green.png#0", k=1, target="images")[0].id == "green.png"
    reopened.close()


def test_add_vectors_with_user_metadata(tmp_path, fake_encoder, store):
    collection = Collection.create(tmp_path / "v", model="fake:colours", encoder=fake_encoder,
                                   store=store)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, fake_encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [{"id": f"cam{i % 2}/{i}.jpg", "path": f"/p/{i}.jpg",
              "meta": {"camera": "a" if i < 3 else "b", "iso": 100 * i}} for i in range(6)]
    collection.add_vectors(items, vectors)
    hits = collection.search_vectors(vectors[0], k=6, where='camera = "b" and iso >= 400')
    assert {h.id for h in hits[0]} == {"cam0/4.jpg", "cam1/5.jpg"}
    with pytest.raises(BadInputError, match="reserved"):
        collection.add_vectors([{"id": "x", "path": "x", "meta": {"source": "y"}}], vectors[:1])
    assert len(collection) == 6  # the refused add wrote nothing
    collection.close()


def test_cli_index_store_and_where(tmp_path, colour_folder, fake_encoder, store):
    runner = CliRunner()
    index = tmp_path / "idx"
    result = runner.invoke(cli, ["index", str(colour_folder), "--into", str(index), "--model",
                                 "fake:colours", "--store", store, "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["search", str(index), "red", "--json", "--where", "folder=sub"])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.output)] == ["sub/blue.webp"]
    info = runner.invoke(cli, ["info", str(index)])
    assert backend_of(store) in info.output
    bad = runner.invoke(cli, ["index", str(colour_folder), "--into", str(tmp_path / "b"),
                              "--model", "fake:colours", "--store", "elastic"])
    assert bad.exit_code == 2 and "unknown store 'elastic'" in bad.output


def test_rows_of_an_uncommitted_write_are_dropped_on_open(tmp_path, colour_folder, fake_encoder,
                                                           store):
    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder, store=store)
    collection.add_paths([colour_folder], progress=False)
    # A writer that crashed after adding vectors (and removing a row) but before its commit:
    stray = fake_encoder.encode_texts(["red"])
    collection.images.add(stray, [{"source": "stray", "modality": "image"}])
    collection.images.remove(np.array([0]))
    collection.close()
    reopened = Collection.open(index, encoder=fake_encoder)
    assert len(reopened.images) == len(reopened) == 4
    hits = reopened.search_vectors(stray, k=10)[0]
    assert len(hits) == 4 and {h.id for h in hits} == {item["id"] for item in reopened.items}

    def rows_in_milvus() -> int:
        images = reopened.images
        return len(images._client.query(images.collection, filter="id >= 0",
                                         output_fields=["id"], consistency_level="Strong"))

    if store != "faiss":  # a reader leaves the stray row (it may be a live writer's) ...
        assert rows_in_milvus() == 5
    reopened.remove(["green.png"])  # ... the next writer deletes it
    if store != "faiss":
        assert rows_in_milvus() == 3
    top_level = reopened.search_vectors(stray, k=9, where='folder = "."')[0]
    assert {h.id for h in top_level} == {"red.jpg", "nocaption.bmp"}
    reopened.close()


def test_filter_strings_and_like_escapes_agree_on_both_stores(tmp_path, fake_encoder, store):
    values = ['a"b', "it's", "a%", "a%b", "a\\b", "a_", "a\\%", "C:\\xyz", "plain"]
    vectors = np.random.default_rng(0).standard_normal((len(values), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder, store=store)
    collection.add_vectors([{"id": f"i{k}", "path": f"/p/{k}.jpg", "meta": {"label": v}}
                            for k, v in enumerate(values)], vectors)
    expected = {r'label == "a\"b"': ['a"b'], r"label == 'it\'s'": ["it's"],
                r"label like 'a\%'": ["a%"], r"label like 'a\_'": ["a_"],
                r"label like 'a\\\\%'": ["a\\b", "a\\%"], r"label like 'C:\x%'": ["C:\\xyz"]}
    for where, labels in expected.items():
        hits = collection.search_vectors(vectors[:1], k=len(values), where=where)[0]
        assert sorted(values[int(h.id[1:])] for h in hits) == sorted(labels), where
    collection.close()


def test_old_generations_are_removed(tmp_path, fake_encoder, store):
    index = tmp_path / "gens"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder,
                                   store=store)
    vectors = fake_encoder.encode_texts(["red", "green", "blue", "grey"])
    for i, vector in enumerate(vectors):  # four commits after the first
        collection.add_vectors([{"id": f"{i}.jpg", "path": f"/p/{i}.jpg"}], vector[None])
    collection.close()
    generations = {m.group(1) for m in (re.match(r"^(?:images|texts|items)\.(\d{6})\.", n)
                                        for n in os.listdir(index)) if m}
    assert generations == {f"{Manifest.load(index).generation:06d}"}


def test_a_copied_folder_is_not_written_and_a_moved_one_is(tmp_path, colour_folder,
                                                           fake_encoder, store):
    """cp -r of an index on a server leaves two folders naming one collection: the copy can
    be searched, not changed (that would change the original). Milvus Lite in the folder is
    copied with it, so its copy is a separate index."""
    if store == "faiss":
        pytest.skip("a faiss folder holds its vectors: a copy is a separate index")
    index, copy, moved = tmp_path / "index", tmp_path / "copy", tmp_path / "moved"
    original = Collection.create(index, model="fake:colours", encoder=fake_encoder, store=store)
    original.add_paths([colour_folder], progress=False)
    original.close()
    shutil.copytree(index, copy)
    copied = Collection.open(copy, encoder=fake_encoder)
    assert copied.search_text("red", k=1)[0].id == "red.jpg"
    if store == "milvus":
        assert copied.remove(["red.jpg"]) == [] and len(copied) == 3
    else:
        with pytest.raises(IndexMismatchError, match=r"is a copy of .*--into NEW_FOLDER"):
            copied.remove(["red.jpg"])
    copied.close()
    index.rename(moved)  # a moved folder takes its collections over
    mover = Collection.open(moved, encoder=fake_encoder)
    assert mover.search_text("red", k=1)[0].id == "red.jpg"  # the copy changed nothing
    assert mover.remove(["green.png"]) == [] and len(mover) == 3
    collections = [f"{mover.manifest.store['collection']}_{role}" for role in ("images", "texts")]
    mover.close()

    runner = CliRunner()
    assert runner.invoke(cli, ["drop", str(moved)], input="n\n").exit_code == 1
    assert moved.exists()  # not confirmed: nothing dropped
    dropped = runner.invoke(cli, ["drop", str(copy), "--yes"])
    assert dropped.exit_code == 0, dropped.output
    assert not copy.exists()
    if store != "milvus":
        assert "another index folder owns them" in dropped.output
        reopened = Collection.open(moved, encoder=fake_encoder)
        assert len(reopened.search_text("red", k=9)) == 3  # the original still works
        reopened.close()
        assert collections_on(store, collections) == [True, True]
    assert runner.invoke(cli, ["drop", str(moved), "--yes"]).exit_code == 0
    assert not moved.exists()
    if store != "milvus":
        assert collections_on(store, collections) == [False, False]
    missing = runner.invoke(cli, ["drop", str(moved), "--yes"])
    assert missing.exit_code == 2 and "no crossmodal index" in missing.output


def collections_on(store: str, names: list[str]) -> list[bool]:
    from crossmodal.index.milvus_store import CLIENTS

    uri = store.partition(":")[2]
    client = CLIENTS.get(uri)
    try:
        return [client.has_collection(name) for name in names]
    finally:
        CLIENTS.release(uri)


def test_every_store_answers_what_a_commit_asks_of_it(tmp_path, fake_encoder, store):
    # The commit protocol asks the store, never its class: whether the folder keeps a log,
    # removed rows held, retraining, a whole save due, converting in place.
    from crossmodal.index.protocol import VectorStore

    collection = Collection.create(tmp_path / "v", model="fake:colours", encoder=fake_encoder,
                                   store=store)
    vectors = np.eye(4, fake_encoder.dim, dtype=np.float32)
    collection.add_vectors([{"id": f"{i}.jpg", "path": f"/p/{i}.jpg"} for i in range(4)],
                           vectors)
    faiss = store == "faiss"
    for held in collection.stores():
        assert isinstance(held, VectorStore)
        assert held.keeps_log == faiss and held.tombstones == 0
        assert not held.retrain_if_due() and not held.wants_full_save(0)
    assert bool(collection.manifest.log) == faiss  # the add went to a log record, or not
    if faiss:
        collection.convert("hnsw")
        assert Collection.open(tmp_path / "v").manifest.index_type == "hnsw"
    else:
        with pytest.raises(BadInputError, match="keeps its vectors in Milvus"):
            collection.convert("hnsw")
        assert len(collection) == 4 and collection.manifest.index_type == "flat"
    collection.close()
