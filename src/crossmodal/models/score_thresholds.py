"""Relevance cut-offs calibrated per model: the cosine above which a hit is relevant.

`score_thresholds.json` beside this module holds, per model id, the thresholds that
benchmarks/accuracy/min_score_calibration.py chose on Flickr8k val: `p90` is the lowest
score at which 90% of the text->image hits kept were relevant there, `p50` the same at 50%.
A threshold belongs to one model's score scale (and one set of its weights: the fingerprint
is checked), so another model gets no default. A model that routes texts by language (the
bilingual fusion) scores an English and a Chinese query on different scales, so its entry may
hold `languages`: thresholds per query language, used when the query text is detected in one.
"""

from __future__ import annotations

import math
from pathlib import Path

from crossmodal.errors import BadInputError
from crossmodal.models.calibration_tables import checked_entry, read_table, write_table
from crossmodal.models.language import detect_language

DATA = Path(__file__).resolve().parent / "score_thresholds.json"
# auto is p50: on Flickr8k val (one relevant photo per caption) towers:lite-en reaches 90%
# only for its top 0.1% of scores, so p90 keeps almost nothing (docs/guide/search-options.md).
ALIASES = {"auto": "p50"}
HELP = "a raw cosine (e.g. 0.25), or auto / p90 / p50 (the model's calibrated cut-offs)"


def calibrated() -> dict[str, dict]:
    """Model id -> {"fingerprint", "thresholds": {"p90": t, ...}, "data"} and, for a model
    calibrated per query language, "languages": {"zh": {"p50": t, ...}, ...}."""
    return read_table(DATA)


def resolve_min_score(spec: str | float | None, model_id: str,
                      fingerprint: str | None = None, text: str | None = None) -> float | None:
    """The cosine cut-off `spec` names for `model_id`: a number is used as given; auto, p90 or
    p50 look the model up (for a text query `text`, in its language's table where the model
    has one). None (or "none") keeps every hit."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none")):
        return None
    if isinstance(spec, int | float):
        return _finite(float(spec), str(spec))
    name = ALIASES.get(spec.strip().lower(), spec.strip().lower())
    if not (name.startswith("p") and name[1:].isdigit()):
        try:
            return _finite(float(spec), spec)
        except ValueError:
            raise BadInputError(f"--min-score must be {HELP}, not {spec!r}") from None
    entry = checked_entry(
        calibrated(), model_id, fingerprint,
        missing=f"no calibrated min-score for model '{model_id}': give a number, or "
                "calibrate it with benchmarks/accuracy/min_score_calibration.py",
        stale=f"the calibrated min-score of '{model_id}' was made with other weights "
              "(fingerprint {theirs}, now {now}): give a number, or recalibrate with "
              "benchmarks/accuracy/min_score_calibration.py")
    thresholds = _thresholds_for(entry, text)
    if name not in thresholds:
        known = ", ".join(sorted(thresholds))
        raise BadInputError(f"'{model_id}' has min-score cut-offs {known}, not {name}")
    return float(thresholds[name])


def _thresholds_for(entry: dict, text: str | None) -> dict[str, float]:
    """The query language's thresholds where the entry has them, else the model's own."""
    by_language = entry.get("languages") or {}
    if text and by_language:
        language = detect_language(text)
        if language in by_language:
            return by_language[language]
    return entry["thresholds"]


def _finite(value: float, spec: str) -> float:
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise BadInputError(f"--min-score must be a cosine between -1 and 1, not {spec}")
    return value


def write_thresholds(model_id: str, fingerprint: str, thresholds: dict[str, float],
                     data: str, language: str | None = None, default: bool = True) -> Path:
    """Store one model's calibrated cut-offs (the calibration script calls this): as the
    model's own (`default`) and, with `language`, as that query language's. Cut-offs of
    other weights (another fingerprint) are dropped."""
    table = calibrated()
    entry = table.get(model_id, {})
    if entry.get("fingerprint") != fingerprint:
        entry = {}
    entry["fingerprint"] = fingerprint
    if default or "thresholds" not in entry:
        entry["thresholds"], entry["data"] = thresholds, data
    if language is not None:
        entry.setdefault("languages", {})[language] = thresholds
        entry.setdefault("language_data", {})[language] = data
    table[model_id] = dict(sorted(entry.items()))
    return write_table(DATA, table)
