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
