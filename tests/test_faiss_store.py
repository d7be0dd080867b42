from __future__ import annotations

import numpy as np
import pytest

from crossmodal.errors import BadInputError, IndexCorruptError
from crossmodal.index.faiss_store import FaissStore


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_topk(scores, positions, truth_scores, k):
    """faiss-style tie tolerance: the k-th score must match; positions may differ on ties."""
    expected = -np.sort(-truth_scores, axis=1)[:, :k]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    picked = np.take_along_axis(truth_scores, positions, axis=1)
    np.testing.assert_allclose(picked, scores, rtol=1e-5, atol=1e-5)


def test_flat_is_exact_against_numpy():
    rng = np.random.default_rng(0)
    base, queries = unit(rng, 500, 32), unit(rng, 20, 32)
    store = FaissStore(32)
    store.add(base[:200])
    store.add(base[200:])
    scores, positions = store.search(queries, 10)
    assert_same_topk(scores, positions, queries @ base.T, 10)


def test_ties_are_tolerated():
    base = np.tile(np.eye(4, dtype=np.float32)[:1], (6, 1))  # six identical vectors
    store = FaissStore(4)
    store.add(base)
    scores, positions = store.search(base[:1], 3)
    assert_same_topk(scores, positions, base[:1] @ base.T, 3)
    assert len(set(positions[0])) == 3


def test_remove_compacts_rows():
    rng = np.random.default_rng(1)
    base = unit(rng, 50, 8)
    store = FaissStore(8)
    store.add(base)
    store.remove(np.array([0, 10, 49]))
    kept = np.delete(base, [0, 10, 49], axis=0)
    assert len(store) == 47
    scores, positions = store.search(kept[:5], 1)
    np.testing.assert_array_equal(positions[:, 0], np.arange(5))


def test_hnsw_and_ivfpq_recall(tmp_path):
    rng = np.random.default_rng(2)
    # Clustered data, as real embeddings are; uniform random is the worst case.
    centres = unit(rng, 50, 32)
    base = centres[rng.integers(0, 50, 5000)] + 0.15 * rng.standard_normal((5000, 32))
    base = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    queries = base[rng.choice(5000, 100, replace=False)] + 0.01
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    for kind, floor in (("hnsw", 0.95), ("ivfpq", 0.5)):
        store = FaissStore(32, kind, {"min_train": 2000} if kind == "ivfpq" else {})
        for start in range(0, 5000, 500):  # batch by batch, as `crossmodal index` adds
            store.add(base[start : start + 500])
        assert store.index is not None and store.index.ntotal == 5000
        _, positions = store.search(queries, 10)
        recall = np.mean([len(set(p) & set(t)) / 10 for p, t in zip(positions, truth, strict=True)])
        assert recall >= floor, (kind, recall)
        files = store.save(tmp_path, kind)
        loaded = FaissStore.load(tmp_path, files, 32, kind, store.params)
        np.testing.assert_array_equal(loaded.search(queries, 10)[1], positions)
        store.remove(np.arange(100))
        assert len(store) == store.index.ntotal == 4900


def test_save_load_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    store = FaissStore(16)
    store.add(unit(rng, 30, 16))
    files = store.save(tmp_path, "images.000001")
    loaded = FaissStore.load(tmp_path, files, 16, "flat", {})
    assert len(loaded) == 30
    with pytest.raises(IndexCorruptError, match="expected"):
        FaissStore.load(tmp_path, files, 8, "flat", {})
    with pytest.raises(BadInputError, match="shape"):
        store.add(unit(rng, 3, 8))
    with pytest.raises(BadInputError, match="unknown index type"):
        FaissStore(16, "lsh")
    few = FaissStore(16, "ivfpq")
    few.add(unit(rng, 10, 16))  # too few to train: searched exactly meanwhile
    assert few.index is None and few.search(unit(rng, 1, 16), 3)[1].shape == (1, 3)
    tight = FaissStore(16, "ivfpq", {"nlist": 512, "min_train": 0})
    with pytest.raises(BadInputError, match="IVF-PQ needs at least 512"):
        tight.add(unit(rng, 300, 16))
    assert len(tight) == 0  # a refused add changes nothing
    scores, positions = store.search(unit(rng, 2, 16), 5, threads=1)
    assert positions.shape == (2, 5)
    empty = FaissStore(16)
    assert empty.search(unit(rng, 2, 16), 5)[0].shape == (2, 0)
