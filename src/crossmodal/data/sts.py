"""Sentence-similarity pairs in the STS Benchmark CSV layout: `sentence1,sentence2,score`, no
header, quoted where needed (SentEval's STS-B; ../shared/data/stsb/ in en, zh and de)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.errors import BadInputError


@dataclass
class StsPairs:
    name: str
    first: list[str]
    second: list[str]
    scores: np.ndarray  # float64, one human score per pair (0-5 on STS-B)

    def __len__(self) -> int:
        return len(self.scores)

    def crossed(self, other: StsPairs) -> StsPairs:
        """Sentence 1 from these pairs, sentence 2 from `other` (row i of each is the same
        pair in two languages), with these scores: a cross-lingual STS set."""
        if len(other) != len(self):
            raise BadInputError(f"{self.name} has {len(self)} pairs and {other.name} "
                                f"{len(other)}: cross-lingual pairs need the same rows")
        return StsPairs(f"{self.name}×{other.name}", self.first, other.second, self.scores)


def parse_sts_spec(spec: str) -> Path:
    """`stsb:PATH` (or a bare path) -> the file."""
    return Path(spec[len("stsb:"):] if spec.startswith("stsb:") else spec).expanduser()


def load_sts(spec: str) -> StsPairs:
    path = parse_sts_spec(spec)
    if not path.is_file():
        raise BadInputError(f"STS file not found: {path}")
    first, second, scores = [], [], []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for line, row in enumerate(csv.reader(handle), 1):
                if not row:
                    continue
                if len(row) != 3:
                    raise BadInputError(f"{path}:{line}: expected sentence1,sentence2,score "
                                        f"(3 fields), got {len(row)}")
                try:
                    scores.append(float(row[2]))
                except ValueError:
                    raise BadInputError(f"{path}:{line}: score {row[2]!r} is not a number "
                                        "(the file has no header row)") from None
                first.append(row[0])
                second.append(row[1])
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    if len(scores) < 2:
        raise BadInputError(f"{path}: needs at least 2 pairs, found {len(scores)}")
    return StsPairs(path.stem, first, second, np.array(scores, np.float64))
