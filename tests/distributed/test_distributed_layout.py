"""Shard plans, the clip-retrieval layout and importing it — everything but Ray itself."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from tests.image_helpers import write_image

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from crossmodal.distributed.clip_layout import list_shards, read_shard, shard_files  # noqa: E402
from crossmodal.distributed.importer import import_embeddings  # noqa: E402
from crossmodal.distributed.inputs import plan_shards, read_tar_samples  # noqa: E402
from crossmodal.distributed.ray_embed import embed_plan, prepare_output  # noqa: E402
from crossmodal.distributed.shard_embed import embed_and_write  # noqa: E402


def _embed_locally(plan, out, encoder):
    """What the Ray run does, in this process: the run file, then every shard."""
    prepare_output(out, encoder.model_id, plan)
    for spec in plan.shards:
        embed_and_write(spec, len(plan.shards), str(out), encoder)


def _tar_bytes(colour) -> bytes:
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tar(path, samples: dict[str, dict[str, bytes]]):
    with tarfile.open(path, "w") as archive:
        for key, files in samples.items():
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def test_folder_plan_chunks_items_and_fingerprint_tracks_changes(colour_folder):
    plan = plan_shards([colour_folder], shard_size=3)
    assert [len(s.items) for s in plan.shards] == [3, 1]
    ids = [i["id"] for s in plan.shards for i in s.items]
    assert sorted(ids) == ["green.png", "nocaption.bmp", "red.jpg", "sub/blue.webp"]
    assert plan.fingerprint == plan_shards([colour_folder], shard_size=3).fingerprint
    write_image(colour_folder / "red.jpg", (200, 0, 0), size=(40, 30))
    assert plan.fingerprint != plan_shards([colour_folder], shard_size=3).fingerprint
    with pytest.raises(BadInputError, match="shard-size"):
        plan_shards([colour_folder], shard_size=0)


def test_plan_reports_skipped_captions_apart_from_inputs(colour_folder):
    (colour_folder / "notes.md").write_text("x", encoding="utf-8")
    plan = plan_shards([colour_folder])
    assert plan.skipped == [(str(colour_folder / "notes.md"), "not an image file")]
    assert plan.skipped_captions == [(f"{colour_folder / 'sub' / 'blue.webp.txt'}:2",
                                      "empty caption")]


def test_table_rows_of_one_image_become_one_item(tmp_path):
    write_image(tmp_path / "img" / "a.png", (250, 10, 10))
    write_image(tmp_path / "img" / "b.png", (10, 10, 250))
    pd.DataFrame({"image_path": ["img/a.png", "img/a.png", "img/b.png"],
                  "caption": ["red one", "a red square", ""]}).to_csv(tmp_path / "t.csv",
                                                                      index=False)
    items = plan_shards([tmp_path / "t.csv"]).shards[0].items
    assert [(i["id"], i["captions"]) for i in items] == [
        ("img/a.png", ["red one", "a red square"]), ("img/b.png", [])]
    assert items[0]["path"] == str((tmp_path / "img" / "a.png").resolve())
    pd.DataFrame({"file": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BadInputError, match="no image path column"):
        plan_shards([tmp_path / "bad.csv"])


def test_webdataset_tar_samples(tmp_path, fake_encoder):
    tar = _write_tar(tmp_path / "part-000.tar", {
        "000001": {"jpg": _tar_bytes((250, 10, 10)), "txt": b"a red square",
                   "json": json.dumps({"url": "http://x/1.jpg"}).encode()},
        "000002": {"png": _tar_bytes((10, 250, 10))},
        "000003": {"txt": b"caption without image"},
    })
    plan = plan_shards([tar])
    assert len(plan.shards) == 1 and plan.shards[0].tar == str(tar.resolve())
    items, skipped = read_tar_samples(tar)
    assert [(i["id"], i["captions"], i.get("url")) for i in items] == [
        ("part-000.tar/000001", ["a red square"], "http://x/1.jpg"),
        ("part-000.tar/000002", [], None)]
    assert skipped == [(f"{tar}:000003", "no image in sample")]

    _embed_locally(plan, tmp_path / "emb", fake_encoder)
    import_embeddings(tmp_path / "emb", tmp_path / "idx", progress=False)
    collection = Collection.open(tmp_path / "idx")
    assert collection.item("part-000.tar/000001")["url"] == "http://x/1.jpg"
    assert collection.search_text("green", k=1)[0].id == "part-000.tar/000002"


def test_shards_round_trip_in_clip_retrieval_layout(colour_folder, tmp_path, fake_encoder):
    (colour_folder / "broken.jpg").write_bytes(b"not an image")
    plan = plan_shards([colour_folder], shard_size=3)
    out = tmp_path / "emb"
    _embed_locally(plan, out, fake_encoder)
    assert list_shards(out) == ["0", "1"]
    files = shard_files(out, 0, 2)
    assert files.done() and np.load(files.img_emb).dtype == np.float16
    shards = [read_shard(out, tag) for tag in list_shards(out)]
    rows = [m for s in shards for m in s.metadata]
    # one row per image-caption pair; a caption-less image has one row with a null caption
    assert [(m["item_id"], m["caption"]) for m in rows] == [
        ("green.png", "green field"), ("nocaption.bmp", None), ("red.jpg", "a red square"),
        ("red.jpg", "red thing"), ("sub/blue.webp", "deep blue sea")]
    text = np.concatenate([s.text_vectors for s in shards])
    assert np.all(text[1] == 0) and np.allclose(np.linalg.norm(text[[0, 2, 3, 4]], axis=1), 1,
                                                atol=1e-2)
    assert shards[0].info["skipped"][0]["input"].endswith("broken.jpg")
    assert shards[0].info["fingerprint"] == fake_encoder.fingerprint

    report = import_embeddings(out, tmp_path / "idx", progress=False)
    assert (report.added, report.texts, report.already_present) == (4, 4, 0)
    collection = Collection.open(tmp_path / "idx")
    assert collection.item("red.jpg")["captions"] == ["a red square", "red thing"]
    assert collection.search_text("red", k=1)[0].id == "red.jpg"
    assert collection.search_text("blue", k=1, target="texts")[0].id == "sub/blue.webp#0"
    # rerun: nothing is added twice; a later `crossmodal index` sees the files unchanged
    assert import_embeddings(out, tmp_path / "idx", progress=False).already_present == 4
    assert collection.add_paths([colour_folder], progress=False).unchanged == 4


def test_import_reads_clip_retrieval_output(tmp_path, fake_encoder):
    """Their layout: float16 vectors, 2-digit shard numbers, image_path/caption only."""
    folder = tmp_path / "clip"
    for sub in ("img_emb", "text_emb", "metadata"):
        (folder / sub).mkdir(parents=True)
    images = fake_encoder.encode_texts(["red", "green", "blue"])  # stand-ins for image rows
    texts = fake_encoder.encode_texts(["red car", "green tree", "blue sky"])
    for tag, rows in (("00", [0, 1]), ("01", [2])):
        np.save(folder / "img_emb" / f"img_emb_{tag}.npy", images[rows].astype(np.float16))
        np.save(folder / "text_emb" / f"text_emb_{tag}.npy", texts[rows].astype(np.float16))
        pd.DataFrame({"image_path": [f"/data/{i}.jpg" for i in rows],
                      "caption": [["red car", "green tree", "blue sky"][i] for i in rows]}
                     ).to_parquet(folder / "metadata" / f"metadata_{tag}.parquet")
    runner = CliRunner()
    result = runner.invoke(cli, ["import-embeddings", str(folder), "--into",
                                 str(tmp_path / "idx"), "--model", "fake:colours", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "imported 3 items (3 captions) from 2 shards" in result.output
    hits = Collection.open(tmp_path / "idx").search_text("blue", k=1)
    assert hits[0].id == "/data/2.jpg" and hits[0].captions == ["blue sky"]

    np.save(folder / "img_emb" / "img_emb_00.npy", np.zeros((2, 8), np.float16))
    result = runner.invoke(cli, ["import-embeddings", str(folder), "--into",
                                 str(tmp_path / "idx2"), "--model", "fake:colours"])
    assert result.exit_code == 2 and "8-d vectors" in result.output
    result = runner.invoke(cli, ["import-embeddings", str(folder), "--into",
                                 str(tmp_path / "idx3")])
    assert result.exit_code == 2 and "give --model" in result.output


def test_output_folder_of_another_plan_is_refused(colour_folder, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    plan = plan_shards([colour_folder], shard_size=2)
    _embed_locally(plan, out, fake_encoder)
    (out / "crossmodal_run.json").unlink()
    with pytest.raises(BadInputError, match="not a crossmodal embeddings folder"):
        embed_plan(plan, out, "fake:colours")
    fresh = tmp_path / "fresh"
    _embed_locally(plan, fresh, fake_encoder)
    done = embed_plan(plan, fresh, "fake:colours")  # all shards on disk: no Ray needed
    assert (done.already_done, done.computed) == (2, 0)
    with pytest.raises(BadInputError, match="other inputs or another model"):
        embed_plan(plan_shards([colour_folder], shard_size=3), fresh, "fake:colours")


def test_clip_retrieval_tooling_reads_our_folder(colour_folder, tmp_path, fake_encoder):
    """embedding-reader is what autofaiss and clip-retrieval's index step read folders with."""
    embedding_reader = pytest.importorskip("embedding_reader")
    out = tmp_path / "emb"
    _embed_locally(plan_shards([colour_folder], shard_size=3), out, fake_encoder)
    reader = embedding_reader.EmbeddingReader(
        embeddings_folder=str(out / "img_emb"), metadata_folder=str(out / "metadata"),
        meta_columns=["image_path", "caption"], file_format="parquet_npy")
    assert (reader.count, reader.dimension) == (5, fake_encoder.dim)
    vectors, metadata = next(iter(reader(batch_size=10, start=0, end=reader.count)))
    assert vectors.shape == (5, fake_encoder.dim)
    assert metadata["caption"].tolist()[:2] == ["green field", None]
