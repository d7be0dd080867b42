"""What several benchmarks share: seeded test vectors, recall against exact results, and
row cosines of two embedding matrices.
A sibling module, not a package: `python benchmarks/x.py` puts this folder on sys.path."""

from __future__ import annotations

import numpy as np


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact neighbours (a row of `truth`) found in `ids`."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth, strict=True)]))


def row_cosines(a: np.ndarray, b: np.ndarray) -> dict:
    """Lowest and mean cosine of matching rows of two unit-row matrices."""
    cos = (a * b).sum(1)
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}


def unit_vectors(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered_vectors(rng: np.random.Generator, n: int, dim: int, centres: int = 10_000,
                      spread: float = 0.05) -> np.ndarray:
    """Points around random centres, as real embeddings cluster by topic."""
    middle = unit_vectors(rng, centres, dim)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        block = middle[rng.integers(0, centres, size)] + spread * rng.standard_normal(
            (size, dim), dtype=np.float32)
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out
