"""Commits through the write-ahead log: cost by change, replay, torn tails, damage, compaction."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal.collection import commits as generations
from crossmodal.engine import Collection
from crossmodal.errors import IndexCorruptError
from crossmodal.index.faiss_store import FaissStore
from crossmodal.index.manifest import MANIFEST


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items(prefix: str, n: int, captions: int = 1) -> list[dict]:
    return [{"id": f"{prefix}{i}", "path": f"/p/{prefix}{i}.jpg",
             "captions": [f"caption {c} of {prefix}{i}" for c in range(captions)]}
            for i in range(n)]


def build(tmp_path, encoder, n=300, index_type="flat") -> Collection:
    rng = np.random.default_rng(0)
    collection = Collection.create(tmp_path / "index", model="fake:colours", encoder=encoder,
                                   index_type=index_type)
    collection.add_vectors(items("a", n), unit(rng, n, 16), unit(rng, n, 16))
    return collection


def generation_files(path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in path.iterdir()
            if generations.GENERATION_FILE.match(p.name) and not p.name.endswith(".log")}


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_one_item_commits_append_a_small_record_and_rewrite_nothing(tmp_path, fake_encoder,
                                                                     index_type):
    collection = build(tmp_path, fake_encoder, index_type=index_type)
    path = collection.path
    before = generation_files(path)
    log = path / collection.manifest.log
    size = log.stat().st_size
    rng = np.random.default_rng(1)
    one, caption = unit(rng, 1, 16), unit(rng, 1, 16)
    collection.add_vectors(items("new", 1), one, caption)
    collection.remove(["a7"])
    assert generation_files(path) == before  # no vectors, index or items file was rewritten
    # one 16-d image + caption vector and its item's JSON, and a removal: well under 2 KB
    assert 0 < log.stat().st_size - size < 2048
    reopened = Collection.open(path, encoder=fake_encoder)
    assert len(reopened) == 300 and "new0" in reopened and "a7" not in reopened
    assert reopened.search_vectors(one, k=1)[0][0].id == "new0"
    assert reopened.item("new0")["captions"] == ["caption 0 of new0"]
    assert reopened.search_vectors(caption, k=1, target="texts")[0][0].id == "new0#0"
    assert len(reopened.search_like("new0#0", k=3)) == 3
    assert reopened.manifest.generation == collection.manifest.generation == 4
    assert reopened.stamp() == collection.stamp() == generations.disk_stamp(path)
    assert reopened.manifest.verify(path) == []


def test_a_torn_last_record_is_ignored_and_cut_off_by_the_next_writer(tmp_path, fake_encoder):
    collection = build(tmp_path, fake_encoder)
    log = collection.path / collection.manifest.log
    committed = log.read_bytes()
    rng = np.random.default_rng(2)
    collection.add_vectors(items("torn", 1), unit(rng, 1, 16), unit(rng, 1, 16))
    whole = log.read_bytes()
    log.write_bytes(whole[: len(committed) + (len(whole) - len(committed)) // 2])  # kill -9
    reader = Collection.open(collection.path, encoder=fake_encoder)
    assert "torn0" not in reader and len(reader) == 300  # never acknowledged: not there
    assert reader.manifest.verify(collection.path) == []  # a torn tail is no damage
    reader.add_vectors(items("next", 1), unit(rng, 1, 16), unit(rng, 1, 16))
    reopened = Collection.open(collection.path, encoder=fake_encoder)
    assert "next0" in reopened and "torn0" not in reopened and len(reopened) == 301


def test_a_damaged_record_is_an_error_not_silently_dropped(tmp_path, fake_encoder):
    collection = build(tmp_path, fake_encoder)
    rng = np.random.default_rng(3)
    log = collection.path / collection.manifest.log
    start = log.stat().st_size
    collection.add_vectors(items("b", 1, captions=0), unit(rng, 1, 16))
    collection.add_vectors(items("c", 1, captions=0), unit(rng, 1, 16))
    data = bytearray(log.read_bytes())
    data[start + 80] ^= 0xFF  # inside the first of the two records: the second follows
    log.write_bytes(bytes(data))
    assert collection.manifest.verify(collection.path) == ["log"]
    with pytest.raises(IndexCorruptError, match="fails its checksum"):
        Collection.open(collection.path, encoder=fake_encoder)


def test_the_log_is_folded_into_a_new_generation_past_its_share(tmp_path, fake_encoder,
                                                                 monkeypatch):
    collection = build(tmp_path, fake_encoder, n=100)
    first = set(generation_files(collection.path))
    monkeypatch.setattr(generations, "WAL_MIN_BYTES", 0)  # share of the base only
    rng = np.random.default_rng(4)
    for n in range(12):  # each record is ~1.5% of the base: the 25% share is passed
        collection.add_vectors(items(f"x{n}-", 1), unit(rng, 1, 16), unit(rng, 1, 16))
    names = set(generation_files(collection.path))
    assert names and not names & first  # a new generation; the old one is gone
    logs = sorted(p.name for p in collection.path.glob("wal.*.log"))
    assert logs == [collection.manifest.log]
    reopened = Collection.open(collection.path, encoder=fake_encoder)
    assert len(reopened) == 112 and reopened.manifest.generation == 2 + 12
    assert reopened.manifest.verify(collection.path) == []


def test_removals_past_the_purge_share_drop_dead_rows_in_a_new_generation(tmp_path,
                                                                          fake_encoder):
    collection = build(tmp_path, fake_encoder, n=100, index_type="hnsw")
    graph = collection.images.index
    collection.remove([f"a{i}" for i in range(10)])
    assert collection.images.tombstones == 10 and collection.images.index is graph
    assert collection.stats()["removed_rows_held"] == 20  # images and captions
    collection.remove([f"a{i}" for i in range(10, 25)])  # 25% dead: a new generation
    assert collection.images.tombstones == 0 and collection.images.physical_rows == 75
    reopened = Collection.open(collection.path, encoder=fake_encoder)
    assert len(reopened) == 75 and reopened.images.tombstones == 0
    hits = reopened.search_vectors(reopened.images.get_vectors([0]), k=75)[0]
    assert {h.id for h in hits} == {f"a{i}" for i in range(25, 100)}


def test_a_format_1_index_opens_and_gets_a_log_at_its_next_commit(tmp_path, fake_encoder):
    import json

    collection = build(tmp_path, fake_encoder, n=10)
    collection.compact()
    manifest = json.loads((collection.path / MANIFEST).read_text())
    (collection.path / manifest.pop("log")).unlink()
    manifest["format"] = 1
    (collection.path / MANIFEST).write_text(json.dumps(manifest))
    old = Collection.open(collection.path, encoder=fake_encoder)
    assert len(old) == 10 and old.manifest.log == ""
    old.remove(["a0"])  # no log yet: a full generation, which starts one
    reopened = Collection.open(collection.path, encoder=fake_encoder)
    assert len(reopened) == 9 and reopened.manifest.log
    assert isinstance(reopened.images, FaissStore)


def test_ivfpq_retrains_at_commit_once_the_collection_is_4x_its_training_set(tmp_path,
                                                                              fake_encoder):
    rng = np.random.default_rng(5)
    collection = Collection.create(tmp_path / "index", model="fake:colours", encoder=fake_encoder,
                                   index_type="ivfpq",
                                   index_params={"min_train": 256, "m": 4, "rerank": 10})
    collection.add_vectors(items("a", 300, captions=0), unit(rng, 300, 16))
    assert collection.manifest.index_params["trained_on"] == 300
    collection.add_vectors(items("b", 600, captions=0), unit(rng, 600, 16))
    assert collection.notes == []  # 900 < 4 x 300
    more = unit(rng, 300, 16)
    collection.add_vectors(items("c", 300, captions=0), more)
    assert collection.notes and "retrained the images IVF-PQ index on 1200" in collection.notes[0]
    reopened = Collection.open(collection.path, encoder=fake_encoder)
    assert reopened.manifest.index_params["trained_on"] == 1200
    assert reopened.images.index.ntotal == 1200
    assert reopened.search_vectors(more[:1], k=1)[0][0].id == "c0"


def test_cli_refuses_another_index_type_for_an_existing_index_unless_converted(
        tmp_path, colour_folder, fake_encoder):
    from click.testing import CliRunner

    from crossmodal.cli.main import cli

    runner = CliRunner()
    into = tmp_path / "idx"
    args = ["index", str(colour_folder), "--into", str(into), "--model", "fake:colours",
            "--quiet"]
    assert runner.invoke(cli, args).exit_code == 0
    refused = runner.invoke(cli, [*args, "--index-type", "hnsw"])
    assert refused.exit_code != 0
    assert "is a flat index; --index-type hnsw applies to new indexes" in refused.output
    assert "--convert" in refused.output and "Traceback" not in refused.output
    converted = runner.invoke(cli, [*args, "--index-type", "hnsw", "--convert"])
    assert converted.exit_code == 0, converted.output
    assert "converted" in converted.output
    reopened = Collection.open(into, encoder=fake_encoder)
    assert reopened.manifest.index_type == "hnsw" and reopened.images.kind == "hnsw"
    assert reopened.search_text("red", k=1)[0].id == "red.jpg"
    retrain = runner.invoke(cli, [*args, "--retrain"])
    assert retrain.exit_code == 0 and "needs no training" in retrain.output
