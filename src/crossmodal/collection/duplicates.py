"""Duplicate photos in a collection: exact copies and near-duplicates, as groups.

Three kinds of link join two images:
- equal file hashes, recorded at index time ("file_sha256"; an index made before that field
  has only "sha256", the file and its captions hashed together: equal ones still mean equal
  bytes, but a copy with other captions is then found by the other links alone);
- perceptual hashes within `hash_distance` bits, either image turned by 0, 90, 180 or 270
  degrees (crossmodal.data.perceptual_hash; recorded at index time, computed from the file
  here for items indexed without one): resized, re-encoded, brightened and turned copies;
- image vectors with a cosine at or above the threshold: lightly cropped or straightened
  copies, which a perceptual hash misses.
Each image's k nearest images (by vector, and by hash) come from a search a batch at a
time, so memory grows with n * k, never n * n. Groups are the connected components of the
links (union-find): a copy of a copy joins the group of the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import faiss
import numpy as np
from tqdm import tqdm

from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.data.perceptual_hash import ROTATIONS, hash_bytes, image_hashes
from crossmodal.index.protocol import VectorStore
from crossmodal.models.duplicate_thresholds import HASH_DISTANCE, duplicate_threshold

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
    hash_distance: int
    items: int  # images looked at
    groups: list[DuplicateGroup] = field(default_factory=list)
    unhashed: int = 0  # images compared by vector only (flat, or no hash and no file)

    @property
    def duplicates(self) -> int:
        """Items that are copies of another (each group's members but its first)."""
        return sum(len(g.members) - 1 for g in self.groups)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "hash_distance": self.hash_distance,
                "items": self.items, "unhashed": self.unhashed,
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


def item_hashes(items: Sequence[dict], progress: bool = False) -> list[list[str] | None]:
    """Each item's perceptual hashes: recorded ones, else made from its file; None for a
    flat photo or a file that cannot be read any more."""
    missing = [p for p, item in enumerate(items) if "phash" not in item]
    out: list[list[str] | None] = [item.get("phash") or None for item in items]
    for position in tqdm(missing, unit="image", desc="hashing", leave=False,
                         disable=not progress or not missing):
        try:
            hashes = image_hashes(load_image(items[position]["path"], target_size=64))
            out[position] = hashes or None  # a flat photo has none
        except (ImageLoadError, OSError):
            out[position] = None
    return out


def hash_pairs(hashes: Sequence[list[str] | None], max_distance: int, k: int = NEIGHBOURS,
               batch: int = 4 * BATCH, threads: int | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, bits apart) of the pairs among each image's `k` nearest by perceptual
    hash (any turn of it against the others upright) at most `max_distance` bits apart,
    each pair once (row < col, its closest turn). The comparison is exhaustive (64-bit
    popcounts, n x 4n of them), `threads` faiss threads (default: as set for the process)."""
    known = np.array([p for p, h in enumerate(hashes) if h], np.int64)
    if len(known) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
    index = faiss.IndexBinaryFlat(64)
    index.add(hash_bytes([hashes[p][0] for p in known]))
    keys, bits = [], []
    before = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    try:
        for start in range(0, len(known), batch):
            rows = known[start : start + batch]
            queries = hash_bytes([h for p in rows for h in hashes[p][:ROTATIONS]])
            distances, near = index.search(queries, min(k + 1, len(known)))
            rows = np.broadcast_to(np.repeat(rows, ROTATIONS)[:, None], near.shape)
            cols = known[np.maximum(near, 0)]
            keep = (near >= 0) & (distances <= max_distance) & (cols != rows)
            a, b = rows[keep], cols[keep]
            keys.append(np.minimum(a, b) * len(hashes) + np.maximum(a, b))
            bits.append(distances[keep])
    finally:
        faiss.omp_set_num_threads(before)
    keys, bits = np.concatenate(keys), np.concatenate(bits)
    if not len(keys):  # no two photos that close
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
    order = np.lexsort((bits, keys))  # by pair, then closest first
    keys, bits = keys[order], bits[order]
    first = np.append(True, keys[1:] != keys[:-1])
    return keys[first] // len(hashes), keys[first] % len(hashes), bits[first]


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
                    threshold: float, hashed: tuple[np.ndarray, ...] | None = None,
                    ) -> list[list[int]]:
    """Groups of positions linked by equal file hashes, a cosine >= `threshold` or (given:
    rows and cols of `hash_pairs`) close perceptual hashes."""
    rows, cols, cosines = pairs
    near = cosines >= threshold
    links = list(zip(rows[near].tolist(), cols[near].tolist(), strict=True))
    if hashed is not None:
        links += list(zip(hashed[0].tolist(), hashed[1].tolist(), strict=True))
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
                    k: int = NEIGHBOURS, progress: bool = False, threads: int | None = None,
                    hash_distance: int = HASH_DISTANCE) -> DuplicateReport:
    """Groups of duplicate images in `collection`, biggest groups first. `threshold`: a
    cosine in (0, 1], or None / "auto": the model's calibrated one; `hash_distance`: the
    most bits two perceptual hashes may differ by (-1: vectors and file hashes only)."""
    manifest = collection.manifest
    cutoff = duplicate_threshold(threshold, manifest.model, manifest.model_fingerprint)
    items, store = collection.items, collection.images
    hashed, unhashed = None, 0
    if hash_distance >= 0:
        hashes = item_hashes(items, progress)
        unhashed = sum(h is None for h in hashes)
        hashed = hash_pairs(hashes, hash_distance, k, threads=threads)
    pairs = similar_pairs(store, cutoff, k, progress=progress, threads=threads)
    groups = [describe(items, store, g) for g in group_positions(items, pairs, cutoff, hashed)]
    groups.sort(key=lambda g: (-len(g.members), g.members[0].id))
    return DuplicateReport(cutoff, hash_distance, len(items), groups, unhashed)
