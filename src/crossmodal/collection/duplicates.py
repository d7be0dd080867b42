"""Duplicate photos in a collection: exact copies and near-duplicates, as groups.

Exact copies are items whose files hashed the same when indexed ("file_sha256"; an index
made before that field has only "sha256", the file and its captions hashed together, so
there equal hashes still mean equal bytes, but a copy with other captions is found by its
vector alone). Near-duplicates (resized, re-encoded, lightly cropped or rotated copies) are
pairs of images whose stored vectors have a cosine at or above the threshold. Each image's
k nearest images come from the image store's own search, a batch of images at a time, so
time and memory grow with n * k, never n * n. Groups are the connected components of both
kinds of link (union-find): a copy of a copy joins the group of the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from crossmodal.index.protocol import VectorStore
from crossmodal.models.duplicate_thresholds import duplicate_threshold

if TYPE_CHECKING:
    from crossmodal.collection.collection import Collection

# Neighbours looked at per image: more copies of one photo than this are still one group
# (each links to some of the others, and the links chain).
NEIGHBOURS = 10
BATCH = 512


@dataclass
class Member:
    id: str
    path: str
    bytes: int | None
    similarity: float  # cosine of its vector with the group's first member's
    copy_of: str | None = None  # the first member with the same file bytes, if any


@dataclass
class DuplicateGroup:
    members: list[Member]  # the largest file first: the one a person would usually keep

    @property
    def exact(self) -> bool:
        """Whether every member is a byte-for-byte copy of the first."""
        return all(m.copy_of is not None for m in self.members[1:])

    def to_dict(self) -> dict:
        return {"size": len(self.members), "exact": self.exact,
                "members": [asdict(m) for m in self.members]}


@dataclass
class DuplicateReport:
    threshold: float
    items: int  # images looked at
    groups: list[DuplicateGroup] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Items that are copies of another (each group's members but its first)."""
        return sum(len(g.members) - 1 for g in self.groups)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "items": self.items,
                "duplicates": self.duplicates, "groups": [g.to_dict() for g in self.groups]}


def similar_pairs(store: VectorStore, floor: float, k: int = NEIGHBOURS, batch: int = BATCH,
                  progress: bool = False, threads: int | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, cosines) of the pairs among each image's `k` nearest scoring >= `floor`,
    each pair once (row < col)."""
    n = len(store)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    bar = tqdm(total=n, unit="image", desc="comparing", disable=not progress or n == 0,
               leave=False)
    for start in range(0, n, batch):
        positions = np.arange(start, min(n, start + batch))
        scores, near = store.search(store.get_vectors(positions), min(k + 1, n), threads)
        rows = np.broadcast_to(positions[:, None], near.shape)
        keep = (near >= 0) & (near != rows) & (scores >= floor)
        a, b = rows[keep], near[keep]
        found.append((np.minimum(a, b), np.maximum(a, b), scores[keep]))
        bar.update(len(positions))
    bar.close()
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows, cols, cosines = (np.concatenate(parts) for parts in zip(*found, strict=True))
    # A pair found from both ends is kept once (its two scores differ only by rounding).
    _, first = np.unique(rows * n + cols, return_index=True)
    return rows[first], cols[first], cosines[first]


def file_key(item: dict) -> str | None:
    """What equal file bytes share: the file's hash, else (older indexes) the item's."""
    if item.get("file_sha256"):
        return "file:" + item["file_sha256"]
    return "item:" + item["sha256"] if item.get("sha256") else None


def exact_pairs(items: Sequence[dict]) -> list[tuple[int, int]]:
    """(first, other) position pairs of items with equal file hashes."""
    first_of: dict[str, int] = {}
    pairs = []
    for position, item in enumerate(items):
        key = file_key(item)
        if key is None:
            continue
        if key in first_of:
            pairs.append((first_of[key], position))
        else:
            first_of[key] = position
    return pairs


def components(n: int, pairs: Sequence[tuple[int, int]] | np.ndarray) -> list[list[int]]:
    """The connected components of more than one position (union-find), each sorted."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in {int(v) for pair in pairs for v in pair}:
        groups.setdefault(root(x), []).append(x)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def group_positions(items: Sequence[dict], pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                    threshold: float) -> list[list[int]]:
    """Groups of positions linked by equal file hashes or a cosine >= `threshold`."""
    rows, cols, cosines = pairs
    near = cosines >= threshold
    links = list(zip(rows[near].tolist(), cols[near].tolist(), strict=True))
    return components(len(items), exact_pairs(items) + links)


def describe(items: Sequence[dict], store: VectorStore, positions: list[int]) -> DuplicateGroup:
    """A group of positions as members: the largest file first, then by id."""
    order = sorted(positions, key=lambda p: (-(items[p].get("bytes") or 0), items[p]["id"]))
    vectors = store.get_vectors(np.array(order))
    cosines = vectors @ vectors[0]
    first_with: dict[str, str] = {}
    members = []
    for position, cosine in zip(order, cosines, strict=True):
        item, key = items[position], file_key(items[position])
        members.append(Member(item["id"], item["path"], item.get("bytes"),
                              round(min(float(cosine), 1.0), 4),
                              first_with.get(key) if key else None))
        if key:
            first_with.setdefault(key, item["id"])
    return DuplicateGroup(members)


def find_duplicates(collection: Collection, threshold: float | str | None = None,
                    k: int = NEIGHBOURS, progress: bool = False,
                    threads: int | None = None) -> DuplicateReport:
    """Groups of duplicate images in `collection` (a Collection), biggest groups first.
    `threshold`: a cosine in (0, 1], or None / "auto": the model's calibrated one."""
    manifest = collection.manifest
    cutoff = duplicate_threshold(threshold, manifest.model, manifest.model_fingerprint)
    items, store = collection.items, collection.images
    pairs = similar_pairs(store, cutoff, k, progress=progress, threads=threads)
    groups = [describe(items, store, g) for g in group_positions(items, pairs, cutoff)]
    groups.sort(key=lambda g: (-len(g.members), g.members[0].id))
    return DuplicateReport(cutoff, len(items), groups)
