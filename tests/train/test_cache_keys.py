"""The one cache-key scheme (paths.content_key) and what the feature caches key on."""

from types import SimpleNamespace

import numpy as np
import torch

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.paths import content_key
from crossmodal.train import features


def test_content_key_ignores_dict_order_and_sees_every_part():
    key = content_key({"model": "m", "data": ["a", "猫"], "prep": {"size": 224}})
    assert key == content_key({"prep": {"size": 224}, "data": ["a", "猫"], "model": "m"})
    assert len(key) == 16 and int(key, 16) >= 0
    assert key != content_key({"model": "m", "data": ["a", "狗"], "prep": {"size": 224}})
    assert key != content_key({"model": "m", "data": ["a", "猫"], "prep": {"size": 256}})


def _texts_encoder(calls: list):
    def text_features(texts):
        calls.append(list(texts))
        return torch.ones(len(texts), 3)

    return SimpleNamespace(config=SimpleNamespace(text={"backbone": "fake"}),
                           text_features=text_features)


def test_text_features_made_in_bf16_do_not_serve_an_fp32_run(tmp_path, monkeypatch):
    data = RetrievalDataset("tiny")
    data.add_image("i0", tmp_path / "i0.jpg")
    data.add_text("a cat", [0], "t0")
    calls: list = []
    encoder = _texts_encoder(calls)
    monkeypatch.setattr(features, "cpu_has_bf16", lambda: True)
    first = features.cached_text_features(encoder, data, tmp_path)
    features.cached_text_features(encoder, data, tmp_path)
    assert len(calls) == 1  # same precision: the cache serves
    monkeypatch.setattr(features, "cpu_has_bf16", lambda: False)
    again = features.cached_text_features(encoder, data, tmp_path)
    assert len(calls) == 2  # fp32 misses the bf16 cache
    np.testing.assert_array_equal(first, again)
    assert len(list(tmp_path.glob("txt-*.npy"))) == 2


def test_eval_embeddings_made_in_bf16_do_not_serve_an_fp32_run(monkeypatch, fake_encoder):
    from crossmodal.evaluation import embed

    data = RetrievalDataset("tiny")
    data.add_image("i0", b"not an image")
    data.add_text("a cat", [0], "t0")
    monkeypatch.setattr(embed, "cpu_has_bf16", lambda: True)
    bf16 = embed.cache_path(fake_encoder, data)
    assert embed.cache_path(fake_encoder, data) == bf16
    monkeypatch.setattr(embed, "cpu_has_bf16", lambda: False)
    fp32 = embed.cache_path(fake_encoder, data)
    assert fp32 != bf16
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "torch")  # a forced runtime: its own vectors
    assert embed.cache_path(fake_encoder, data) not in (bf16, fp32)
