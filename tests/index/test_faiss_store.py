from __future__ import annotations

import numpy as np
import pytest

from crossmodal.errors import BadInputError, IndexCorruptError
from crossmodal.index import faiss_search, faiss_store
from crossmodal.index.faiss_store import FaissStore
from crossmodal.index.filters import parse_filter
from crossmodal.index.protocol import VectorStore
from crossmodal.index.vector_rows import VectorRows
from tests.stores import BACKENDS, StoreMaker, milvus_lite_or_skip, release_lite


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory):
    """One Milvus Lite server for the module, started on first use; each test gets its own
    collections. Stopped at the end, so no server thread outlives the module."""
    started: list[str] = []

    def start() -> str:
        if not started:
            started.append(milvus_lite_or_skip(tmp_path_factory.mktemp("milvus") / "lite.db"))
        return started[0]

    yield start
    if started:
        release_lite(started[0])


@pytest.fixture(params=BACKENDS)
def stores(request, lite_uri, milvus_server_uri):
    """Makes stores of one backend; the same tests run against faiss, Milvus Lite and a
    Milvus server."""
    uri = {"faiss": lambda: None, "milvus-lite": lite_uri,
           "milvus-server": milvus_server_uri}[request.param]()
    maker = StoreMaker(request.param, uri)
    yield maker
    maker.close()


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_topk(scores, positions, truth_scores, k):
    """faiss-style tie tolerance: the k-th score must match; positions may differ on ties."""
    expected = -np.sort(-truth_scores, axis=1)[:, :k]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    picked = np.take_along_axis(truth_scores, positions, axis=1)
    np.testing.assert_allclose(picked, scores, rtol=1e-5, atol=1e-5)


def test_flat_is_exact_against_numpy(stores):
    rng = np.random.default_rng(0)
    base, queries = unit(rng, 500, 32), unit(rng, 20, 32)
    store = stores.new(32)
    assert isinstance(store, VectorStore)
    store.add(base[:200])
    store.add(base[200:])
    scores, positions = store.search(queries, 10)
    assert_same_topk(scores, positions, queries @ base.T, 10)


def test_ties_are_tolerated(stores):
    base = np.tile(np.eye(4, dtype=np.float32)[:1], (6, 1))  # six identical vectors
    store = stores.new(4)
    store.add(base)
    scores, positions = store.search(base[:1], 3)
    assert_same_topk(scores, positions, base[:1] @ base.T, 3)
    assert len(set(positions[0])) == 3


def test_remove_compacts_rows(stores, tmp_path):
    rng = np.random.default_rng(1)
    base = unit(rng, 50, 8)
    store = stores.new(8)
    store.add(base)
    store.remove(np.array([0, 10, 49]))
    kept = np.delete(base, [0, 10, 49], axis=0)
    assert len(store) == 47
    scores, positions = store.search(kept[:5], 1)
    np.testing.assert_array_equal(positions[:, 0], np.arange(5))
    # Removed rows never come back, before or after the commit that makes removal final.
    assert (store.search(base[[0, 10, 49]], 1)[0][:, 0] < 0.999).all()  # no exact match left
    np.testing.assert_allclose(store.get_vectors([0, 46]), kept[[0, 46]], rtol=1e-6)
    files = store.save(tmp_path, "images.000001")
    store.committed()
    loaded = stores.reload(store, tmp_path, files)
    assert len(loaded) == 47
    _, positions = loaded.search(base[[0, 10, 49, 1]], 1)
    assert positions[3, 0] == 0  # base[1] is now row 0
    assert (loaded.search(base[[0, 10, 49]], 1)[0][:, 0] < 0.999).all()


def test_filters_select_rows_by_metadata(stores, tmp_path):
    rng = np.random.default_rng(4)
    base = unit(rng, 60, 16)
    meta = [{"source": f"{'beach' if i % 3 == 0 else 'city'}/{i}.jpg", "mtime": 1000 + i,
             "date": f"2024-01-{1 + i % 28:02d}", "modality": "image"} for i in range(60)]
    store = stores.new(16)
    store.add(base[:30], meta[:30])
    store.add(base[30:], meta[30:])
    truth = base[:5] @ base.T
    where = parse_filter('source like "beach/%" and mtime >= 1030')
    allowed = [i for i in range(60) if i % 3 == 0 and i >= 30]
    scores, positions = store.search(base[:5], 4, where=where)
    for row in range(5):
        best = sorted(allowed, key=lambda i, row=row: -truth[row, i])[:4]
        assert list(positions[row]) == best
        np.testing.assert_allclose(scores[row], truth[row, best], rtol=1e-5, atol=1e-5)
    in_list = parse_filter('date in ["2024-01-02", "2024-01-03"] or source = "city/5.jpg"')
    found = set(store.search(base[:1], 10, where=in_list)[1][0]) - {-1}
    assert found == {i for i in range(60) if 1 + i % 28 in (2, 3)} | {5}
    none = store.search(base[:2], 5, where=parse_filter("source = nowhere"))[1]
    assert (none == -1).all()  # nothing matches: padded, not an error
    store.remove(np.array([30, 33]))  # two beach rows: the rest move down by up to two
    after = set(store.search(base[:1], 60, where=where)[1][0]) - {-1}
    assert after == {i - 2 for i in allowed if i > 33}
    files = store.save(tmp_path, "images.000002")
    store.committed()
    rows = meta[:30] + [m for i, m in enumerate(meta) if i >= 30 and i not in (30, 33)]
    loaded = stores.reload(store, tmp_path, files, metadata=lambda: rows)
    assert set(loaded.search(base[:1], 60, where=where)[1][0]) - {-1} == after


def test_faiss_filter_through_the_index_uses_an_id_selector():
    rng = np.random.default_rng(5)
    base = unit(rng, 3000, 16)
    store = FaissStore(16, "hnsw", filter_planner=False)
    store.add(base, [{"odd": i % 2 == 1} for i in range(3000)])
    with pytest.MonkeyPatch.context() as patch:  # force the selector path, not the subset
        patch.setattr(FaissStore, "_exact", lambda *a: pytest.fail("subset path taken"))
        patch.setattr(faiss_store, "FILTER_EXACT_ROWS", 0)
        _, positions = store.search(base[:20], 5, where=parse_filter("odd = true"))
    assert (positions % 2 == 1).all()
    exact = np.argsort(-(base[:20] @ base[1::2].T), axis=1)[:, :5] * 2 + 1
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(positions, exact, strict=True)])
    assert recall >= 0.9


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
        # HNSW keeps removed rows in its graph as tombstones (no rebuild); IVF drops them.
        kept_in_index = 5000 if kind == "hnsw" else 4900
        assert len(store) == 4900 and store.index.ntotal == kept_in_index
        assert store.tombstones == 100
        scores, after = store.search(base[:100], 10)
        assert after.min() >= 0 and after.max() < 4900
        assert (scores[:, 0] < 0.9999).all()  # a removed row never finds itself


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


SAME_ANSWER_FILTERS = (
    'source like "%dog%"', 'source like "samples/_ayak.jpg"', 'source like "samples/%"',
    r'source like "a\_b"', 'source like "a_b"', r'source like "dog\%%"', "source = a_b",
    "not (x = 1)", "x != 1", "not (x < 5)", "x < 5", "x = 2", "flag = true", "flag = 1",
    'not source like "samples/%"', 'x in [1, 2] or source like "%(1).jpg"',
    'source like "samples/k%" and not (x = 1)')


def test_every_store_gives_the_same_answer_to_a_filter(stores):
    """Milvus servers take only prefix patterns and read _ literally; Milvus Lite drops
    rows without the field under `not`: the stores must still agree with the filter."""
    sources = ["samples/kayak.jpg", "samples/xayak.jpg", "a/dog.jpg", "hotdog", "dog%x",
               "a_b", "axb", "samples/k(1).jpg"]
    values = [1, 2, 2.0, "str", True, None, 3, 1]  # None: the row has no x
    meta = [{"source": s, **({} if v is None else {"x": v}), "flag": i % 2 == 0}
            for i, (s, v) in enumerate(zip(sources, values, strict=True))]
    rng = np.random.default_rng(7)
    base = unit(rng, len(meta), 8)
    store = stores.new(8)
    store.add(base, meta)
    for text in SAME_ANSWER_FILTERS:
        where = parse_filter(text)
        expected = {i for i, row in enumerate(meta) if where.matches(row)}
        found = set(store.search(base[:1], len(meta), where=where)[1][0]) - {-1}
        assert found == expected, text


def test_a_filter_checked_after_milvus_still_finds_k_rows(stores):
    """Only the rows least like the query match: Milvus's candidates must grow past its
    16,384 limit (then the matching keys are listed) for the k hits to come back."""
    rng = np.random.default_rng(8)
    n = 20_000
    base = unit(rng, n, 8)
    query = base[:1]
    far = set(np.argsort(query @ base.T)[0][:7].tolist())  # the 7 least similar rows
    store = stores.new(8)
    for start in range(0, n, 5_000):
        store.add(base[start : start + 5_000],
                  [{"name": f"{i}{'z' if i in far else ''}"} for i in range(start, start + 5_000)])
    scores, positions = store.search(query, 5, where=parse_filter('name like "%z"'))
    best = sorted(far, key=lambda i: -float(base[i] @ query[0]))[:5]
    assert list(positions[0]) == best
    np.testing.assert_allclose(scores[0], (query @ base[best].T)[0], rtol=1e-5, atol=1e-5)


def test_milvus_hnsw_and_ivfpq_recall(stores):
    """Milvus's own HNSW and IVF_PQ (IVF_SQ8 on Milvus Lite) find what exact search finds."""
    if stores.backend == "faiss":
        pytest.skip("faiss's index types: test_hnsw_and_ivfpq_recall")
    rng = np.random.default_rng(9)
    centres = unit(rng, 30, 32)
    base = centres[rng.integers(0, 30, 4000)] + 0.15 * rng.standard_normal((4000, 32))
    base = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    queries = base[rng.choice(4000, 50, replace=False)]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    for kind, params, floor in (("hnsw", {}, 0.95), ("ivfpq", {"nlist": 32, "nprobe": 16}, 0.5)):
        store = stores.new(32, kind, params)
        store.add(base, [{"half": "a" if i < 2000 else "b"} for i in range(4000)])
        store.flush(wait_s=120)
        _, positions = store.search(queries, 10)
        recall = np.mean([len(set(p) & set(t)) / 10 for p, t in zip(positions, truth, strict=True)])
        assert recall >= floor, (kind, recall)
        _, positions = store.search(queries, 10, where=parse_filter('half like "a%"'))
        assert ((positions >= 0) & (positions < 2000)).all(), kind


def clustered_with_filters(rng, n=30_000, dim=32, centres=500, share=0.065):
    """Clustered vectors; a filter matching whole clusters (correlated with content, as
    'folder = beach' is) and one matching random rows, each about `share` of the rows."""
    middle = unit(rng, centres, dim)
    cluster = rng.integers(0, centres, n)
    base = middle[cluster] + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    base = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    correlated = cluster < int(centres * share)
    uncorrelated = rng.random(n) < share
    meta = [{"c": bool(a), "u": bool(b)} for a, b in zip(correlated, uncorrelated, strict=True)]
    queries = middle[rng.integers(0, centres, 200)] + 0.05 * rng.standard_normal((200, dim))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    return base, meta, queries, {"c": correlated, "u": uncorrelated}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_filtered_ann_returns_k_hits_and_recall_against_exact(kind):
    rng = np.random.default_rng(7)
    base, meta, queries, masks = clustered_with_filters(rng)
    params = {"nlist": 128, "m": 8, "min_train": 5000} if kind == "ivfpq" else {}
    store = FaissStore(32, kind, params)
    store.add(base, meta)
    with pytest.MonkeyPatch.context() as patch:  # as in collections over ~400k rows
        patch.setattr(faiss_store, "FILTER_EXACT_ROWS", 0)
        for name, mask in masks.items():
            ids = np.flatnonzero(mask)
            assert len(ids) > 1500  # more than 5%: the exact-subset shortcut is off
            truth = ids[np.argsort(-(queries @ base[ids].T), axis=1)[:, :10]]
            _, positions = store.search(queries, 10, where=parse_filter(f"{name} = true"))
            assert (positions >= 0).all(), f"{(positions < 0).sum()} empty result slots"
            assert mask[positions].all()
            recall = np.mean([len(set(p) & set(t)) / 10
                              for p, t in zip(positions, truth, strict=True)])
            assert recall >= 0.95, (kind, name, recall)


def test_hnsw_scans_a_filter_exactly_when_that_is_cheaper_than_the_graph_walk():
    # 1M rows, M 16, efSearch 128: a 6.4% filter (64k rows) costs less to scan than the
    # ~2,000 x 32 distances of a widened walk, which on clustered data found half the top 10.
    params = {"M": 16, "ef_search": 128}
    assert not faiss_search.graph_beats_exact("hnsw", params, 10, 64_000, 1_000_000)
    assert faiss_search.graph_beats_exact("hnsw", params, 10, 300_000, 1_000_000)
    assert faiss_search.graph_beats_exact("ivfpq", {}, 10, 64_000, 1_000_000)
    rng = np.random.default_rng(7)
    base, meta, queries, masks = clustered_with_filters(rng, n=6000)
    # the size shortcut off, so only the cost rule can choose the scan
    store = FaissStore(32, "hnsw", {"M": 8, "ef_search": 16}, filter_exact_rows=1,
                       filter_exact_share=0.0)
    store.add(base, meta)
    ids = np.flatnonzero(masks["c"])
    truth = ids[np.argsort(-(queries @ base[ids].T), axis=1)[:, :10]]
    _, positions = store.search(queries, 10, where=parse_filter("c = true"))
    assert (np.sort(positions, axis=1) == np.sort(truth, axis=1)).all()  # exact: no miss
    with pytest.MonkeyPatch.context() as patch:  # a broad filter on random rows: walked
        patch.setattr(FaissStore, "_exact", lambda *a: pytest.fail("scanned, not walked"))
        _, positions = store.search(queries, 10, where=parse_filter("u = false"))
    assert (~masks["u"][positions]).all()


def test_queries_far_from_a_content_filter_are_scanned_not_walked():
    # A 20% filter matching whole clusters: too many rows for the cost rule to scan, and
    # most queries come from clusters it excludes, where a walk finds the wrong rows.
    rng = np.random.default_rng(11)
    base, meta, queries, masks = clustered_with_filters(rng, n=20_000, share=0.2)
    ids = np.flatnonzero(masks["c"])
    truth = ids[np.argsort(-(queries @ base[ids].T), axis=1)[:, :10]]

    def recall(planner: bool) -> tuple[float, FaissStore]:
        store = FaissStore(32, "hnsw", {"M": 8, "ef_search": 16}, filter_exact_rows=0,
                           filter_planner=planner)
        store.add(base, meta)
        assert store.filter_plan(len(ids), 10) == "graph"
        _, positions = store.search(queries, 10, where=parse_filter("c = true"))
        assert masks["c"][positions].all()
        return np.mean([len(set(p) & set(t)) / 10
                        for p, t in zip(positions, truth, strict=True)]), store

    walked, _ = recall(planner=False)
    planned, store = recall(planner=True)
    assert walked < 0.9 and planned >= 0.98, (walked, planned)
    assert 0 < store.rare_scans < len(queries)  # queries inside the filter's clusters walk


def test_vector_rows_read_appended_rows_without_joining_them():
    rng = np.random.default_rng(3)
    base, extra = unit(rng, 50, 8), unit(rng, 3000, 8)
    rows = VectorRows(base, 8)
    for start in range(0, 3000, 7):  # many small appends, as a server's uploads
        rows.append(extra[start : start + 7])
    everything = np.concatenate([base, extra])
    ids = rng.integers(0, len(everything), 500)
    assert len(rows) == 3050 and rows.base is base  # nothing joined by appends or reads
    np.testing.assert_array_equal(rows[ids], everything[ids])
    np.testing.assert_array_equal(rows.joined(), everything)
    rows.append(extra[:1])
    np.testing.assert_array_equal(rows[np.array([3050, 0])], np.stack([extra[0], base[0]]))


def test_k_hits_whenever_k_rows_match_even_if_the_index_search_falls_short():
    rng = np.random.default_rng(8)
    base = unit(rng, 4000, 16)
    store = FaissStore(16, "hnsw", {"M": 4, "ef_search": 8}, filter_exact_rows=0,
                       filter_planner=False)
    store.add(base, [{"keep": i % 40 == 0} for i in range(4000)])  # 100 rows match
    with pytest.MonkeyPatch.context() as patch:  # a graph walk too short to find 30 of 100
        patch.setattr(faiss_search, "MAX_FILTERED_EF", 1)
        _, positions = store.search(base[:50], 30, where=parse_filter("keep = true"))
    assert store.exact_fallbacks > 0  # some queries came back short and were redone exactly
    assert (positions >= 0).all() and (positions % 40 == 0).all()
    assert all(len(set(row)) == 30 for row in positions)


def test_hnsw_removal_keeps_the_graph_and_skips_dead_rows(tmp_path):
    rng = np.random.default_rng(9)
    base = unit(rng, 3000, 16)
    store = FaissStore(16, "hnsw")
    store.add(base, [{"i": i} for i in range(3000)])
    graph = store.index
    store.remove(np.arange(0, 3000, 3))  # a third of the rows
    assert store.index is graph  # no rebuild: the removed rows are tombstones
    kept = np.delete(np.arange(3000), np.arange(0, 3000, 3))
    scores, positions = store.search(base[kept[:100]], 10)
    assert (positions >= 0).all() and (positions[:, 0] == np.arange(100)).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    _, hits = store.search(base[::3][:100], 10)  # the removed rows' own vectors
    assert (hits >= 0).all()  # still k hits, from live rows only
    assert not np.isin(kept[hits], np.arange(0, 3000, 3)).any()
    filtered = store.search(base[:5], 3000, where=parse_filter("i >= 0"))[1]
    assert set(filtered[0]) == set(range(2000))
    files = store.save(tmp_path, "images.000001")  # a third dead: past PURGE_SHARE, dropped
    assert store.tombstones == 0 and "alive" not in files
    store.remove(np.array([0]))
    files = store.save(tmp_path, "images.000002")  # one dead row: kept, with a liveness file
    loaded = FaissStore.load(tmp_path, files, 16, "hnsw", store.params,
                             lambda: [{"i": int(i)} for i in kept[1:]])
    assert len(loaded) == 1999 and loaded.tombstones == 1
    assert loaded.search(base[kept[1:3]], 1)[1][:, 0].tolist() == [0, 1]
    assert set(loaded.search(base[:1], 3000, where=parse_filter("i >= 0"))[1][0]) == set(
        range(1999))


def test_ivfpq_retrains_when_the_collection_outgrows_its_training_set():
    rng = np.random.default_rng(10)
    store = FaissStore(16, "ivfpq", {"min_train": 1000, "nlist": 0, "m": 4})
    store.add(unit(rng, 1000, 16))
    assert store.params["trained_on"] == 1000 and not store.needs_retraining()
    store.add(unit(rng, 3000, 16))
    assert store.needs_retraining()  # 4x the training set
    nlist = store.params["nlist"]
    assert store.retrain() and store.params["trained_on"] == 4000
    assert store.params["nlist"] > nlist  # chosen from the data again
    assert not store.needs_retraining() and store.index.ntotal == 4000
    assert not FaissStore(16, "hnsw").retrain()


def test_every_registered_store_runs_the_suite():
    from crossmodal.index.stores import STORE_BACKENDS
    from tests.stores import SETUPS

    assert set(STORE_BACKENDS) == set(SETUPS), "a store without setups in tests/stores.py"
    assert set(BACKENDS) == {setup for setups in SETUPS.values() for setup in setups}
