"""Texts longer than a model's context: keep the head, keep the tail, or average chunks.

A text encoder reads at most `context_length` tokens; the tokenizer keeps the first ones
("head", every encoder's default). An article-length query (NewsImages' queries are whole
articles) loses the rest. Two other policies, for any encoder that counts tokens
(`text_lengths`):

    tail        the last words that fit
    chunks      consecutive pieces that each fit (cut after a sentence end where one is near),
                embedded apart; the text's vector is their token-weighted mean, re-normalised
    sentences   each sentence a piece (chunked if one does not fit), averaged as chunks are,
                even when the whole text fits: for towers trained on one-sentence captions,
                whose vector of a paragraph is worse than the mean of its sentences' vectors

`@N` caps the token budget below the model's own context (`chunks@32`), which is how
`benchmarks/accuracy/long_text.py` measures the policies on captions shorter than the real context.
Texts are cut at word boundaries (each CJK character is a word), so no piece ends inside a
word; a text that fits is encoded as it is, whatever the policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from crossmodal.errors import BadInputError

POLICIES = ("head", "tail", "chunks", "sentences")
_CJK = "\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# a word is a CJK character or a run of anything else that is not space, with the space
# before it, so that joining words gives the text back
_WORDS = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]+)")
_SENTENCE_END = re.compile(r"[.!?;。！？；]['\"”’)]*$")


@dataclass(frozen=True)
class LongTextPolicy:
    mode: str = "head"
    max_tokens: int | None = None  # None: the model's context length

    @property
    def passthrough(self) -> bool:
        """The encoder's own behaviour (head at its context): nothing to do."""
        return self.mode == "head" and self.max_tokens is None

    def __str__(self) -> str:
        return self.mode + (f"@{self.max_tokens}" if self.max_tokens else "")


def parse_long_text(spec: str | LongTextPolicy | None) -> LongTextPolicy:
    """`head`, `tail`, `chunks`, optionally `@N` tokens (`chunks@64`); None: head."""
    if spec is None or isinstance(spec, LongTextPolicy):
        return spec or LongTextPolicy()
    mode, at, tokens = spec.strip().lower().partition("@")
    if mode not in POLICIES or (at and not tokens.isdigit()) or (at and int(tokens) < 4):
        raise BadInputError(f"long-text policy must be one of {', '.join(POLICIES)}, "
                            f"optionally @TOKENS (at least 4), e.g. chunks@64; not {spec!r}")
    return LongTextPolicy(mode, int(tokens) if at else None)


def words_of(text: str) -> list[str]:
    return _WORDS.findall(text)


def sentences_of(text: str) -> list[str]:
    """The text cut after each word that ends a sentence (. ! ? ; and their CJK forms)."""
    out, current = [], []
    for word in words_of(text):
        current.append(word)
        if _SENTENCE_END.search(word):
            out.append("".join(current).strip())
            current = []
    if current:
        out.append("".join(current).strip())
    return [sentence for sentence in out if sentence] or [text]


def _longest_fit(count: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [1, count] with fits(n) (fits is monotone), or 1 if none fits."""
    low, high = 1, count
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def split_text(text: str, mode: str, limit: int,
               token_count: Callable[[str], int]) -> list[str]:
    """The pieces of `text` the policy embeds: [text] when it fits, else the head, the tail
    or consecutive chunks, each within `limit` tokens (a single over-long word stays whole)."""
    if mode == "sentences":
        return [piece for sentence in sentences_of(text)
                for piece in split_text(sentence, "chunks", limit, token_count)]
    if token_count(text) <= limit:
        return [text]
    words = words_of(text)

    def joined(part: list[str]) -> str:
        return "".join(part).strip()

    if mode == "head":
        return [joined(words[:_longest_fit(len(words),
                                           lambda n: token_count(joined(words[:n])) <= limit)])]
    if mode == "tail":
        n = _longest_fit(len(words), lambda n: token_count(joined(words[-n:])) <= limit)
        return [joined(words[-n:])]
    pieces, start = [], 0
    while start < len(words):
        rest = words[start:]
        n = _longest_fit(len(rest), lambda n, rest=rest: token_count(joined(rest[:n])) <= limit)
        ends = [i + 1 for i in range(n // 2, n) if _SENTENCE_END.search(rest[i])]
        n = ends[-1] if ends and n < len(rest) else n  # cut after a sentence end if near
        pieces.append(joined(rest[:n]))
        start += n
    return pieces


def encode_long_texts(encoder, texts: Sequence[str], policy: LongTextPolicy) -> np.ndarray:
    """`encoder.encode_texts(texts)` under the policy: (len(texts), dim) unit rows."""
    if policy.passthrough or not len(texts):
        return encoder.encode_texts(texts)
    limit = min(policy.max_tokens or encoder.context_length, encoder.context_length)
    pieces, owner, weights = [], [], []
    # one batched count answers the common case (the text fits) without splitting it
    for row, (text, length) in enumerate(zip(texts, encoder.text_lengths(texts), strict=True)):
        if length <= limit and policy.mode != "sentences":
            parts, lengths = [text], [length]
        else:
            parts = split_text(text, policy.mode, limit, lambda t: encoder.text_lengths([t])[0])
            lengths = encoder.text_lengths(parts)
        pieces += parts
        owner += [row] * len(parts)
        weights += [min(n, limit) for n in lengths]
    vectors = np.asarray(encoder.encode_texts(pieces), dtype=np.float32)
    owner = np.asarray(owner)
    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    np.add.at(out, owner, vectors * np.asarray(weights, np.float32)[:, None])
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    single = np.bincount(owner, minlength=len(texts)) == 1
    out[single] = vectors[np.isin(owner, np.flatnonzero(single))]  # one piece: its own vector
    return out


class LongTextEncoder:
    """An encoder whose texts follow a long-text policy; images and the rest unchanged.
    Its fingerprint names the policy (cached embeddings of another policy are not reused)."""

    def __init__(self, encoder, policy: LongTextPolicy):
        self.encoder, self.policy = encoder, policy

    def __getattr__(self, name: str):
        if name in ("encoder", "policy"):
            raise AttributeError(name)
        return getattr(self.encoder, name)

    @property
    def fingerprint(self) -> str:
        return f"{self.encoder.fingerprint}|long-text:{self.policy}"

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return encode_long_texts(self.encoder, texts, self.policy)


def with_long_text(encoder, spec: str | LongTextPolicy | None):
    """`encoder` itself for the default policy, else a LongTextEncoder over it."""
    policy = parse_long_text(spec)
    return encoder if policy.passthrough else LongTextEncoder(encoder, policy)
