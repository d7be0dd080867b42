"""The hf: and open_clip: backends, with tiny random models built here (nothing downloaded)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from PIL import Image

from crossmodal.errors import MissingDependencyError, UnknownModelError
from crossmodal.models.hf import preprocessing_from
from crossmodal.models.openclip import parse_open_clip_name
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import load_encoder
from tests.hf_helpers import KINDS, TEXTS, build, load, photos


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: build(kind, root / kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_encoder_contract(saved, kind):
    enc = load(saved[kind])
    assert isinstance(enc, Encoder) and enc.model_id == f"hf:{saved[kind]}"
    assert enc.dim == 16 and enc.context_length == KINDS[kind][0]
    vectors = enc.encode_texts(TEXTS)
    assert vectors.shape == (4, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # padding to another batch's longest text must not move a text's vector
    np.testing.assert_allclose(enc.encode_texts([TEXTS[0]])[0], vectors[0], atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(TEXTS[2:0:-1]), vectors[2:0:-1], atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[~np.eye(4, dtype=bool)].max() < 0.999, "different texts, same vector"

    images = enc.encode_images(photos())
    assert images.shape == (4, 16) and images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert (images @ images.T)[0, 1] < 0.999, "red and blue photos got the same vector"
    assert enc.encode_texts([]).shape == enc.encode_images([]).shape == (0, 16)

    long_text = " ".join(["red"] * 40)
    pieces = [len(t) if kind == "siglip2" else len(t.split()) for t in (*TEXTS[:2], long_text)]
    assert enc.text_lengths([*TEXTS[:2], long_text]) == [n + KINDS[kind][1] for n in pieces]
    assert enc.encode_texts([long_text]).shape == (1, 16)  # truncated to the context, no crash


@pytest.mark.parametrize("kind", ["clip", "siglip2"])
def test_images_match_the_transformers_processor(tmp_path, kind):
    """Our PIL preprocessing (and SigLIP2 patching) gives the reference processor's vectors."""
    folder = build(kind, tmp_path / kind)
    if kind == "clip":
        processor = tf.CLIPImageProcessorPil(size={"shortest_edge": 32},
                                             crop_size={"height": 32, "width": 32})
    else:
        processor = tf.Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    processor.save_pretrained(folder)
    enc = load(folder)
    assert enc.preprocessing.size == 32
    square = [photos()[3].resize((32, 32)), Image.new("RGB", (32, 32), (200, 90, 20))]
    inputs = processor(square if kind == "siglip2" else photos(), return_tensors="pt")
    model = tf.AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        output = model.get_image_features(**inputs)
    expected = getattr(output, "pooler_output", output)
    expected = (expected / expected.norm(dim=-1, keepdim=True)).numpy()
    got = enc.encode_images(square if kind == "siglip2" else photos())
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_preprocessing_from_processor_config():
    processor = {"crop_size": {"height": 20, "width": 20}, "size": {"shortest_edge": 20},
                 "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 2}
    clip = preprocessing_from(processor, 224, "clip")
    assert (clip.size, clip.mean, clip.std) == (20, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert (clip.resize, clip.interpolation) == ("shortest_edge", "bilinear")
    assert preprocessing_from({"crop_size": 48}, 224, "clip").size == 48
    assert preprocessing_from({"size": {"shortest_edge": 40}}, 224, "clip").size == 40
    assert preprocessing_from({"do_center_crop": False}, 64, "clip").resize == "squash"
    siglip = preprocessing_from({}, 384, "siglip")
    assert (siglip.size, siglip.mean, siglip.resize) == (384, (0.5, 0.5, 0.5), "squash")
    naflex = preprocessing_from({"patch_size": 16, "max_num_patches": 256}, 0, "siglip2")
    assert naflex.size == 256


def test_fingerprint_follows_weights_and_preprocessing(tmp_path):
    folder = build("clip", tmp_path / "clip")
    first = load(folder).fingerprint
    assert load(folder).fingerprint == first
    size = (folder / "model.safetensors").stat().st_size
    build("clip", folder, seed=1)  # retrained: same architecture, same file size
    assert (folder / "model.safetensors").stat().st_size == size
    retrained = load(folder).fingerprint
    assert retrained != first
    (folder / "preprocessor_config.json").write_text(json.dumps({"crop_size": 24}))
    assert load(folder).fingerprint != retrained


def test_unsupported_and_missing_models(tmp_path):
    bert = tf.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)
    tf.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(UnknownModelError, match=r"is a bert model; hf: supports clip"):
        load(tmp_path / "bert")
    with pytest.raises(UnknownModelError, match="cannot load"):
        load(tmp_path / "does-not-exist")
    with pytest.raises(UnknownModelError, match="not in the hub cache"):  # offline, not cached
        load("someone/not-cached-model")


def test_parse_open_clip_name():
    assert parse_open_clip_name("ViT-B/32") == ("ViT-B-32", "openai")
    assert parse_open_clip_name("ViT-L/14@336px") == ("ViT-L-14-336", "openai")
    assert parse_open_clip_name("RN50/openai") == ("RN50", "openai")
    assert parse_open_clip_name("ViT-B-32/laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert parse_open_clip_name("ViT-B-32") == ("ViT-B-32", None)
    assert parse_open_clip_name("tiny//tmp/w.pt") == ("tiny", "/tmp/w.pt")


def test_open_clip_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import fails even where it is installed
    load_encoder.cache_clear()
    with pytest.raises(MissingDependencyError, match=r"crossmodal\[openclip\]"):
        load_encoder("open_clip:ViT-B/32")


def test_open_clip_tiny_model(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                             "patch_size": 8},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                           "layers": 2}}
    (tmp_path / "crossmodal-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "crossmodal-tiny.json")
    model = open_clip.create_model("crossmodal-tiny")
    weights = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), weights)
    load_encoder.cache_clear()
    enc = load_encoder(f"open_clip:crossmodal-tiny/{weights}")
    assert (enc.dim, enc.context_length, enc.preprocessing.size) == (16, 16, 32)
    vectors = enc.encode_texts(TEXTS[:3])
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(enc.encode_texts([TEXTS[0]])[0], vectors[0], atol=1e-5)
    images = enc.encode_images(photos())
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert enc.text_lengths(["a red square"]) == [5]
    first = enc.fingerprint
    torch.save({k: v + 0.01 for k, v in model.state_dict().items()}, weights)
    load_encoder.cache_clear()
    assert load_encoder(f"open_clip:crossmodal-tiny/{weights}").fingerprint != first
    load_encoder.cache_clear()


def test_an_unreachable_hub_fails_fast_with_one_clear_error(monkeypatch):
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(UnknownModelError, match=r"the hub cannot be asked \(127\.0\.0\.1 "
                                                r"cannot be reached"):
        load("someone/not-cached-model")
    assert time.monotonic() - started < 5
