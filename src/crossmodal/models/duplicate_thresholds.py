"""Near-duplicate thresholds calibrated per model: the image-image cosine at or above which
two photos are taken for copies of one another (cropped, straightened, re-encoded), and the
perceptual-hash distance, the same for every model (resized, re-encoded, turned copies).

`duplicate_thresholds.json` beside this module holds, per model id, the threshold that
benchmarks/accuracy/duplicates.py chose on Flickr8k train photos and their edited copies
(measured on val photos: docs/guide/duplicates.md). A threshold belongs to one model's
score scale and one set of its weights (the fingerprint is checked); another model needs
one given by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

from crossmodal.errors import BadInputError
from crossmodal.models.calibration_tables import checked_entry, read_table, write_table

DATA = Path(__file__).resolve().parent / "duplicate_thresholds.json"
# Perceptual hashes at most this many bits apart (of 64) are copies, whatever the model: the
# largest distance whose pairs were >= 0.99 true on Flickr8k train photos and their edited
# copies (benchmarks/accuracy/duplicates.py; docs/guide/duplicates.md).
HASH_DISTANCE = 11


def calibrated() -> dict[str, dict]:
    """Model id -> {"fingerprint", "threshold", "data"}."""
    return read_table(DATA)


def checked_threshold(value: float | str) -> float:
    """`value` as a cosine threshold in (0, 1], or one clear BadInputError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"--threshold must be a cosine in (0, 1], e.g. 0.9, not "
                            f"{value!r}") from None
    if not math.isfinite(number) or not 0.0 < number <= 1.0:
        raise BadInputError(f"--threshold must be a cosine in (0, 1] (1 keeps only identical "
                            f"vectors), not {value}")
    return number


def duplicate_threshold(spec: float | str | None, model_id: str,
                        fingerprint: str | None = None) -> float:
    """The threshold `spec` names: a number as given (checked), or None / "auto" for the
    one calibrated for `model_id`."""
    if spec is not None and str(spec).strip().lower() not in ("", "auto"):
        return checked_threshold(spec)
    entry = checked_entry(
        calibrated(), model_id, fingerprint,
        missing=f"no calibrated duplicate threshold for model '{model_id}': give a threshold "
                "(a cosine, e.g. 0.9), or calibrate one with benchmarks/accuracy/duplicates.py",
        stale=f"the calibrated duplicate threshold of '{model_id}' was made with other "
              "weights (fingerprint {theirs}, now {now}): give a threshold, or calibrate "
              "again with benchmarks/accuracy/duplicates.py")
    return float(entry["threshold"])


def write_threshold(model_id: str, fingerprint: str, threshold: float, data: str) -> Path:
    """Store one model's calibrated threshold (the benchmark calls this)."""
    table = calibrated()
    table[model_id] = {"fingerprint": fingerprint, "threshold": threshold, "data": data}
    return write_table(DATA, table)
