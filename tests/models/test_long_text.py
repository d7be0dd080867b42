"""Texts longer than the context: head, tail and chunk-averaging (models/long_text.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.errors import BadInputError
from crossmodal.models import registry
from crossmodal.models.long_text import (
    LongTextEncoder,
    LongTextPolicy,
    encode_long_texts,
    parse_long_text,
    split_text,
    with_long_text,
    words_of,
)
from tests.fakes import FakeEncoder


class TruncatingEncoder(FakeEncoder):
    """The fake colour encoder, reading only its first context_length - 2 words (as a real
    tokenizer cuts at the context, specials included)."""

    def encode_texts(self, texts):
        keep = self.context_length - 2
        return super().encode_texts([" ".join(t.split()[:keep]) for t in texts])


def word_count(text: str) -> int:
    return len(text.split()) + 2  # FakeEncoder's count: words and two specials


LONG = "a photo of a street at night and later a red car parked near the shop"


def test_policies_parse_and_a_bad_one_is_one_clear_error():
    assert parse_long_text(None) == parse_long_text("head") == LongTextPolicy()
    assert parse_long_text("CHUNKS@64") == LongTextPolicy("chunks", 64)
    assert str(parse_long_text("tail@16")) == "tail@16"
    assert parse_long_text("sentences") == LongTextPolicy("sentences")
    for bad in ("middle", "chunks@", "chunks@x", "chunks@2", "head@-3"):
        with pytest.raises(BadInputError, match="long-text policy must be one of"):
            parse_long_text(bad)


def test_words_keep_the_text_and_split_cjk_into_characters():
    assert words_of("一只狗 runs, fast.") == ["一", "只", "狗", " runs,", " fast."]
    assert "".join(words_of("  two  spaces here")).strip() == "two  spaces here"


def test_head_tail_and_chunks_fit_the_budget_and_keep_the_order():
    words = LONG.split()
    assert split_text("a red car", "chunks", 8, word_count) == ["a red car"]  # fits as it is
    assert split_text(LONG, "head", 8, word_count) == [" ".join(words[:6])]
    assert split_text(LONG, "tail", 8, word_count) == [" ".join(words[-6:])]
    chunks = split_text(LONG, "chunks", 8, word_count)
    assert " ".join(chunks) == LONG and all(word_count(c) <= 8 for c in chunks)
    assert len(chunks) == 3


def test_chunks_cut_after_a_sentence_end_when_one_is_near():
    text = "one two three four. five six seven eight nine ten"
    assert split_text(text, "chunks", 8, word_count)[0] == "one two three four."
    one_word = "supercalifragilistic"  # a word longer than the budget stays whole
    assert split_text(one_word, "tail", 1, lambda t: 5) == [one_word]


def test_sentences_are_pieces_even_when_the_text_fits():
    text = "A dog runs. It is wet! 一只狗。在跑"
    assert split_text(text, "sentences", 64, word_count) == ["A dog runs.", "It is wet!",
                                                            "一只狗。", "在跑"]
    assert split_text("no sentence end here", "sentences", 64, word_count) == [
        "no sentence end here"]
    long_sentence = " ".join(["word"] * 20) + "."  # chunked when one does not fit
    assert all(word_count(p) <= 8 for p in split_text(long_sentence, "sentences", 8, word_count))


def test_chunk_vectors_are_the_token_weighted_mean_of_their_pieces():
    encoder = FakeEncoder()
    policy = parse_long_text("chunks")
    vector = encode_long_texts(encoder, [LONG], policy)[0]
    pieces = split_text(LONG, "chunks", encoder.context_length, word_count)
    parts = encoder.encode_texts(pieces) * np.array([[word_count(p)] for p in pieces])
    expected = parts.sum(0) / np.linalg.norm(parts.sum(0))
    np.testing.assert_allclose(vector, expected, atol=1e-6)
    short = ["a red square", "blue"]  # texts that fit are encoded as they are
    for spec in ("head", "tail", "chunks", "chunks@6", "sentences"):
        np.testing.assert_array_equal(encode_long_texts(encoder, short, parse_long_text(spec)),
                                      encoder.encode_texts(short))
    assert encode_long_texts(encoder, [], policy).shape == (0, encoder.dim)


def test_the_policy_is_in_the_fingerprint_and_head_is_the_encoder_itself():
    encoder = FakeEncoder()
    assert with_long_text(encoder, "head") is encoder
    wrapped = with_long_text(encoder, "chunks@32")
    assert isinstance(wrapped, LongTextEncoder)
    assert wrapped.fingerprint == f"{encoder.fingerprint}|long-text:chunks@32"
    assert (wrapped.model_id, wrapped.dim) == (encoder.model_id, encoder.dim)
    assert with_long_text(encoder, "head@32").fingerprint != encoder.fingerprint


def test_search_finds_what_only_the_tail_of_a_long_query_says(tmp_path, colour_folder,
                                                               monkeypatch):
    encoder = TruncatingEncoder()
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: encoder)
    registry.load_encoder.cache_clear()
    runner = CliRunner()
    index = tmp_path / "idx"
    assert runner.invoke(cli, ["index", str(colour_folder), "--into", str(index), "--model",
                               "fake:colours", "--quiet"]).exit_code == 0
    query = "a long description of a photo that at the very end says green"

    def top(*options: str) -> str:
        result = runner.invoke(cli, ["search", str(index), query, "--json", "--k", "1",
                                     *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)[0]["id"]

    assert top() != "green.png"  # the tokenizer's cut never sees "green"
    assert top("--long-text", "tail") == "green.png"
    assert top("--long-text", "chunks") == "green.png"
    bad = runner.invoke(cli, ["search", str(index), query, "--long-text", "middle"])
    assert bad.exit_code == 2 and "long-text policy must be one of" in bad.output
    registry.load_encoder.cache_clear()
