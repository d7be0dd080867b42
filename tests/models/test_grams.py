"""The gram bag of the text head and the tta views of the image head, on raw tensors."""

from __future__ import annotations

import pytest
import torch

from crossmodal.errors import UnknownModelError
from crossmodal.models.towers.grams import GramBag, grams_of
from crossmodal.models.towers.heads import TowerHeads, embed_images, embed_texts


def test_grams_are_words_or_characters_with_bigrams():
    assert grams_of("A dog, running!", "words") == ["a", "dog", "running", "a dog", "dog running"]
    assert grams_of("两只狗在 snow 里。", "chars") == [
        "两", "只", "狗", "在", "snow", "里", "两 只", "只 狗", "狗 在", "在 snow", "snow 里"]


def test_vocabulary_keeps_grams_seen_in_enough_texts():
    bag = GramBag(4, "words", min_count=2)
    bag.fit(["a dog runs", "a dog sits", "a cat"])
    assert sorted(bag.vocab) == ["a", "a dog", "dog"]
    assert bag.table.weight.shape == (4, 4)  # three grams and the zero padding row


def test_a_text_without_known_grams_adds_nothing():
    bag = GramBag(4, "chars", min_count=1).eval()
    bag.fit(["小狗跑", "小猫"])
    out = bag(["小狗", "a dog", ""])
    assert out[0].abs().sum() > 0
    assert torch.equal(out[1:], torch.zeros(2, 4))
    expected = bag.table.weight[[bag.vocab[g] for g in ("小", "狗", "小 狗")]].mean(0)
    torch.testing.assert_close(out[0], expected)


def test_gram_dropout_only_while_training():
    torch.manual_seed(0)
    bag = GramBag(8, "words", min_count=1, dropout=0.5)
    text = "one two three four five six seven eight"
    bag.fit([text])
    bag.eval()
    assert torch.equal(bag([text]), bag([text]))
    bag.train()
    assert not torch.equal(bag([text]), bag.eval()([text]))


def test_heads_save_and_load_their_vocabulary(tmp_path):
    spec = {"dim": 8, "grams": {"unit": "words", "min_count": 1}}
    heads = TowerHeads(6, 5, spec).eval()
    heads.grams.fit(["a red ball", "two dogs"])
    heads.save(tmp_path / "heads.safetensors")
    loaded = TowerHeads(6, 5, spec).eval()
    loaded.load(tmp_path / "heads.safetensors")
    assert loaded.grams.vocab == heads.grams.vocab
    features, texts = torch.randn(3, 5), ["a red dog", "two balls", "nothing known"]
    torch.testing.assert_close(embed_texts(loaded, features, texts),
                               embed_texts(heads, features, texts))
    with pytest.raises(UnknownModelError, match="pass the texts"):
        embed_texts(heads, features)
    other = TowerHeads(6, 5, {"dim": 8, "grams": {"unit": "words", "min_count": 1}})
    other.grams.fit(["just one"])
    other.save(tmp_path / "other.safetensors")
    bare = TowerHeads(6, 5, {"dim": 8})  # a config without grams cannot take them
    with pytest.raises(UnknownModelError, match="do not fit"):
        bare.load(tmp_path / "other.safetensors")


def test_views_are_averaged_as_unit_vectors():
    heads = TowerHeads(6, 5, {"dim": 4}).eval()
    plain, mirror = torch.randn(3, 6), torch.randn(3, 6)
    out = embed_images(heads, torch.stack([plain, mirror], 1))
    each = [torch.nn.functional.normalize(heads.image(x), dim=-1) for x in (plain, mirror)]
    torch.testing.assert_close(out, torch.nn.functional.normalize(each[0] + each[1], dim=-1))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_jieba_words_for_chinese_and_the_unit_survives_a_save(tmp_path):
    pytest.importorskip("jieba")
    assert grams_of("一只黑色的狗在草地上奔跑。", "jieba")[:4] == ["一只", "黑色", "的", "狗"]
    assert "草地 上" in grams_of("一只黑色的狗在草地上奔跑。", "jieba")
    bag = GramBag(8, unit="jieba", min_count=2)
    bag.fit(["黑色的狗在草地上", "一只黑色的狗", "草地上的猫"])
    assert "黑色" in bag.vocab and "黑" not in bag.vocab  # words, not characters
    bag.save(tmp_path / "grams.safetensors")
    assert GramBag.load(tmp_path / "grams.safetensors").unit == "jieba"
