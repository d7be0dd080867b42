"""The keyword index: tokens, BM25 against a hand computation, reciprocal rank fusion, what
keyword search finds that the (fake) vectors miss, and that the index on disk never disagrees
with the committed items (a new generation, log records, a failed commit, a bad file)."""

from __future__ import annotations

import errno
import logging
import math

import numpy as np
import pytest

from crossmodal.collection import commits, keyword_state
from crossmodal.collection.hybrid import rrf
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError, IndexWriteError
from crossmodal.index.keywords import KeywordIndex, tokenize
from tests.fakes import FakeEncoder
from tests.keyword_helpers import TARGET, write_shop_folder


# --- tokens and BM25 ----------------------------------------------------------------------
def test_tokens_of_file_names_codes_and_chinese():
    assert tokenize("IMG_2043.JPG") == ["img", "2043", "jpg"]
    assert tokenize("MyHolidayPhoto-DSC00123") == ["my", "holiday", "photo", "dsc", "00123",
                                                   "123"]
    assert tokenize("ＸＪ－９０００") == tokenize("xj-9000") == ["xj", "9000"]  # full width
    assert tokenize("Two dogs on the grass") == ["two", "dog", "grass"]
    # Chinese: every character and every pair of neighbours.
    assert tokenize("黑狗在草地") == ["黑", "狗", "在", "草", "地", "黑狗", "狗在", "在草", "草地"]
    assert tokenize("菜单: 牛肉面 12元") == ["菜", "单", "菜单", "牛", "肉", "面", "牛肉", "肉面",
                                          "12", "元"]


def oracle_bm25(query: list[str], docs: list[list[str]], k1=1.2, b=0.75) -> list[float]:
    """Okapi BM25 with Lucene's idf, written out term by term."""
    n, average = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for doc in docs:
        score = 0.0
        for term in set(query):
            df = sum(term in d for d in docs)
            if not df or term not in doc:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / average))
        out.append(score)
    return out


def test_bm25_scores_match_the_formula_and_forget_removed_items():
    index = KeywordIndex()
    captions = {"a.jpg": ["red kite red sky"], "b.jpg": ["a kite"], "c.jpg": ["green field"]}
    for item_id, texts in captions.items():
        index.add_item(item_id, texts)
    docs = [tokenize(text) for item_id, texts in captions.items()
            for text in [item_id, *texts]]  # file name, then its captions
    numbers, scores = index.scores("red kite")
    expected = oracle_bm25(tokenize("red kite"), docs)
    assert np.allclose(scores, [expected[i] for i in numbers])
    assert sorted(numbers.tolist()) == [i for i, s in enumerate(expected) if s > 0]

    index.remove_items(["a.jpg"])  # its documents leave the counts and the idf
    numbers, scores = index.scores("kite")
    assert [index.doc_item[n] for n in numbers] == ["b.jpg"]
    assert np.allclose(scores, oracle_bm25(["kite"], docs[2:])[1])
    assert index.counts() == (2, 2)


def test_rrf_adds_reciprocal_ranks():
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    expected = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61}
    assert [key for key, _ in fused] == ["a", "c", "b"]
    assert all(math.isclose(score, expected[key]) for key, score in fused)
    # Equal sums: the key ranked best anywhere first, then the earlier ranking's.
    assert [key for key, _ in rrf([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert rrf([[], []]) == []


# --- what keyword search finds that vectors miss --------------------------------------------
@pytest.fixture
def shop(tmp_path, fake_encoder):
    path = tmp_path / "index"
    Collection.create(path, model="fake:colours", encoder=fake_encoder).add_paths(
        [write_shop_folder(tmp_path / "shop")], progress=False)
    return Collection.open(path, encoder=fake_encoder)


@pytest.mark.parametrize("query", ["XJ-9000", "xj9000", "2043", "IMG 2043", "星河"])
def test_keyword_finds_a_code_a_file_name_and_chinese_that_vectors_miss(shop, query):
    vector = [h.id for h in shop.search_text(query, k=5, mode="vector")]
    assert vector.index(TARGET) == 4  # last of five: the encoder does not know the word
    assert [h.id for h in shop.search_text(query, k=5, mode="keyword")][0] == TARGET
    assert [h.id for h in shop.search_text(query, k=5, mode="hybrid")][0] == TARGET


def test_keyword_search_of_captions_where_and_scores(shop):
    hits = shop.search_text("星河", k=5, target="texts", mode="keyword")
    assert [(h.id, h.text) for h in hits] == [("camera/IMG_2043.jpg#1", "星河牌矿泉水")]
    assert hits[0].kind == "text" and hits[0].score > 0
    shelf = shop.search_text("shelf", k=10, mode="keyword", where="name = 'dark2.png'")
    assert [h.id for h in shelf] == ["dark2.png"]
    assert shop.search_text("nothing matches this", mode="keyword") == []
    fused = shop.search_text("shelf 2", k=3, mode="hybrid")
    assert fused[0].id == "dark2.png" and fused[0].score == pytest.approx(1 / 61 + 1 / 61,
                                                                       abs=0.01)
    assert [h.rank for h in fused] == [1, 2, 3]


def test_bad_mode_and_a_cosine_cut_off_in_keyword_mode_are_one_line(shop):
    with pytest.raises(BadInputError, match="--mode must be one of vector, keyword, hybrid"):
        shop.search_text("red", mode="bm25")
    with pytest.raises(BadInputError, match="not to keyword search"):
        shop.search_text("red", mode="keyword", min_score=0.2)
    cut = shop.search_text("XJ-9000", k=5, mode="hybrid", min_score=0.99)
    assert [h.id for h in cut] == ["camera/IMG_2043.jpg"]  # the keyword hit stays


def test_removing_and_renaming_update_the_keyword_index(shop, fake_encoder):
    shop.remove(["camera/IMG_2043.jpg"])
    assert shop.search_text("2043", mode="keyword") == []
    vector = fake_encoder.encode_texts(["white"])
    shop.add_vectors([{"id": "renamed/IMG_3000.jpg", "path": "x", "captions": ["XJ-9000"]}],
                     vector, vector)
    again = Collection.open(shop.path, encoder=fake_encoder)  # replays the log records
    for col in (shop, again):
        assert [h.id for h in col.search_text("xj 9000", mode="keyword")] == \
            ["renamed/IMG_3000.jpg"]
        assert col.search_text("2043", mode="keyword") == []
        assert [h.id for h in col.search_text("3000", mode="keyword")] == \
            ["renamed/IMG_3000.jpg"]


# --- on disk: derived from the committed items, never beside them -------------------------
def keyword_view(col: Collection) -> list:
    """What keyword search returns for every item's words (sorted: numbering may differ)."""
    index = col.keywords.index(col.items, len(col.text_rows))
    words = {w for item in col.items for text in [item["id"], *item["captions"]]
             for w in tokenize(text)}
    return sorted((w, h.item_id, h.caption, round(h.score, 9))
                  for w in words for h in index.search(w, 10_000))


def test_a_generation_saves_it_and_opening_loads_it_then_the_log(shop, fake_encoder,
                                                                  monkeypatch):
    shop.compact()
    name = shop.manifest.files["keywords"]["name"]
    assert name == f"keywords.{shop.stamp()[0]:06d}.npz" and (shop.path / name).is_file()
    vector = fake_encoder.encode_texts(["white"])
    shop.add_vectors([{"id": "new/QX_77.png", "path": "x", "captions": ["fresh words"]}],
                     vector, vector)  # a log record after the generation
    shop.remove(["dark0.png"])
    expected = keyword_view(shop)

    def no_rebuild(items):
        raise AssertionError("the keyword index was rebuilt instead of loaded")

    monkeypatch.setattr(keyword_state, "build", no_rebuild)
    again = Collection.open(shop.path, encoder=fake_encoder)
    assert not again.keywords.loaded  # a vector search does not pay for it
    again.search_text("red", mode="vector")
    assert not again.keywords.loaded
    assert keyword_view(again) == expected  # the file plus the two log records
    assert again.manifest.verify(again.path) == []


def test_a_bad_or_missing_file_is_rebuilt_from_the_items(shop, fake_encoder, caplog):
    shop.compact()
    expected = keyword_view(shop)
    path = shop.path / shop.manifest.files["keywords"]["name"]
    path.write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING, "crossmodal.engine"):
        assert keyword_view(Collection.open(shop.path, encoder=fake_encoder)) == expected
    assert "rebuilt from the items" in caplog.text
    path.unlink()  # (another writer's new generation removed it since we opened)
    assert keyword_view(Collection.open(shop.path, encoder=fake_encoder)) == expected


def test_a_file_that_disagrees_with_the_items_is_not_trusted(shop, fake_encoder, caplog):
    shop.compact()
    expected = keyword_view(shop)
    stale = KeywordIndex()
    stale.add_item("ghost.png", ["XJ-9000"])
    stale.save(shop.path / shop.manifest.files["keywords"]["name"], shop.stamp()[0])
    with caplog.at_level(logging.WARNING, "crossmodal.engine"):
        again = Collection.open(shop.path, encoder=fake_encoder)
        assert keyword_view(again) == expected
    assert "disagrees with the items" in caplog.text
    assert [h.id for h in again.search_text("XJ-9000", mode="keyword")] == \
        ["camera/IMG_2043.jpg"]


@pytest.mark.parametrize("where", ["keywords", "log"])
def test_a_failed_commit_leaves_the_keyword_index_at_the_last_commit(shop, fake_encoder,
                                                                      monkeypatch, where):
    shop.search_text("shelf", mode="keyword")  # loaded before the failure
    before, files = keyword_view(shop), sorted(p.name for p in shop.path.iterdir())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "keywords":  # the new generation's keyword file cannot be written
        monkeypatch.setattr(commits, "WAL_MIN_BYTES", 0)
        monkeypatch.setattr(commits, "WAL_SHARE", 0.0)
        monkeypatch.setattr(KeywordIndex, "save", full)
    else:  # the log record cannot be appended
        monkeypatch.setattr(commits.wal, "append", full)
    vector = fake_encoder.encode_texts(["white"])
    with pytest.raises(IndexWriteError, match="nothing was"):
        shop.add_vectors([{"id": "lost/ZZ_1.png", "path": "x", "captions": ["XJ-9000"]}],
                         vector, vector)
    assert shop.search_text("zz", mode="keyword") == []
    assert keyword_view(shop) == before
    assert sorted(p.name for p in shop.path.iterdir()) == files  # no half-written generation
    monkeypatch.undo()
    assert keyword_view(Collection.open(shop.path, encoder=FakeEncoder())) == before
