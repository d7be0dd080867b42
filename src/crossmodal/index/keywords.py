"""A keyword index (BM25) over captions and file names, for words an encoder does not know:
a file name, a product code, a rare word, text read off a photo.

Each document is one field of one item: its file name (caption number -1) or one of its
captions (0, 1, ...). Documents are numbered in the order they were added and never
renumbered until the index is rebuilt; removing an item marks its documents dead, so an add
or a remove costs its own documents, not the collection.

Tokens (`tokenize`), the same for documents and queries:
- text is NFKC-normalised (full-width letters and digits become ASCII) and lower-cased;
- camelCase is split, and letters and digits are separate tokens: "IMG_2043.jpg" gives
  img, 2043, jpg, so "2043" and "img 2043" find it; a run of digits with leading zeros also
  gives the number without them ("DSC00123" is found by "123");
- English words lose a plural "s" ("dogs" -> "dog"), and a few stop words are dropped;
- Chinese, Japanese and Korean have no spaces: each character is a token and so is each
  pair of neighbouring characters (unigrams + bigrams, as Lucene's CJK analysers do), so a
  one-character word (狗) matches and a two-character word (草地) ranks above its characters
  found apart. No dictionary (jieba) is needed, and no word list can miss a new word.

Scores are Okapi BM25 (k1 = 1.2, b = 0.75) with the Lucene idf, log(1 + (N - df + .5) /
(df + .5)), which is never negative.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.storage import atomic_write

K1 = 1.2
B = 0.75
NAME = -1  # the caption number of an item's file-name document
FORMAT = 1  # of the saved file; another number: rebuilt from the items

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]+|[^\W\d_]+|\d+")
_CJK_RUN = re.compile(rf"[{_CJK}]")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
STOP_WORDS = frozenset({"a", "an", "the", "of", "in", "on", "at", "to", "and", "or", "is", "are",
                        "with", "its", "it", "this", "that"})


def tokenize(text: str) -> list[str]:
    """The tokens of a caption, a file name or a query (see the module's docstring)."""
    text = unicodedata.normalize("NFKC", text)
    tokens: list[str] = []
    for word in _WORD.findall(_CAMEL.sub(" ", text)):
        if _CJK_RUN.match(word):
            tokens += list(word)
            tokens += [word[i : i + 2] for i in range(len(word) - 1)]
        elif word.isdigit():
            tokens.append(word)
            if word[0] == "0" and word.strip("0"):
                tokens.append(word.lstrip("0"))
        else:
            word = word.lower()
            if word in STOP_WORDS:
                continue
            if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
                word = word[:-1]
            tokens.append(word)
    return tokens


def name_text(item_id: str) -> str:
    """What of an item id is searchable as its name: the whole path (folders too)."""
    return item_id


@dataclass
class KeywordHit:
    item_id: str
    caption: int  # NAME (-1) for the file name
    score: float


class KeywordIndex:
    """BM25 over documents keyed (item id, caption number); add and remove by item."""

    def __init__(self) -> None:
        self.terms: dict[str, int] = {}
        self._docs: list[array] = []  # per term: document numbers, in order
        self._tfs: list[array] = []  # per term: the term's count in each of those documents
        self.doc_item: list[str] = []
        self.doc_caption = array("i")
        self.doc_length = array("i")
        self.alive = bytearray()
        self.docs_of: dict[str, list[int]] = {}
        self.live_docs = 0
        self.live_length = 0
        self._alive_view: np.ndarray | None = None  # cached numpy views, dropped on change
        self._length_view: np.ndarray | None = None

    # --- changes -----------------------------------------------------------------------
    def add_item(self, item_id: str, captions: Iterable[str]) -> None:
        """Index an item's file name and captions (an id already there is replaced)."""
        if item_id in self.docs_of:
            self.remove_items([item_id])
        numbers = [self._add_doc(item_id, NAME, tokenize(name_text(item_id)))]
        numbers += [self._add_doc(item_id, k, tokenize(c)) for k, c in enumerate(captions)]
        self.docs_of[item_id] = numbers

    def _add_doc(self, item_id: str, caption: int, tokens: list[str]) -> int:
        number = len(self.doc_item)
        for term, count in Counter(tokens).items():
            slot = self.terms.get(term)
            if slot is None:
                slot = self.terms[term] = len(self._docs)
                self._docs.append(array("i"))
                self._tfs.append(array("i"))
            self._docs[slot].append(number)
            self._tfs[slot].append(count)
        self.doc_item.append(item_id)
        self.doc_caption.append(caption)
        self.doc_length.append(len(tokens))
        self.alive.append(1)
        self.live_docs += 1
        self.live_length += len(tokens)
        self._alive_view = self._length_view = None
        return number

    def remove_items(self, item_ids: Iterable[str]) -> None:
        for item_id in item_ids:
            for number in self.docs_of.pop(item_id, ()):
                self.alive[number] = 0
                self.live_docs -= 1
                self.live_length -= self.doc_length[number]
        self._alive_view = None

    def counts(self) -> tuple[int, int]:
        """(items, caption documents) alive: must equal the collection's items and captions."""
        names = len(self.docs_of)
        return names, self.live_docs - names

    # --- searching ---------------------------------------------------------------------
    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(document numbers, BM25 scores) of the live documents matching any query token."""
        alive = self._alive()
        lengths = self._lengths()
        average = self.live_length / self.live_docs if self.live_docs else 1.0
        numbers_all, scores_all = [], []
        for term in set(tokenize(query)):
            slot = self.terms.get(term)
            if slot is None:
                continue
            docs = np.frombuffer(self._docs[slot], np.int32)
            keep = alive[docs]
            docs = docs[keep]
            if not len(docs):
                continue
            tf = np.frombuffer(self._tfs[slot], np.int32)[keep].astype(np.float64)
            idf = np.log1p((self.live_docs - len(docs) + 0.5) / (len(docs) + 0.5))
            norm = K1 * (1 - B + B * lengths[docs] / max(average, 1e-9))
            numbers_all.append(docs)
            scores_all.append(idf * tf * (K1 + 1) / (tf + norm))
        if not numbers_all:
            return np.zeros(0, np.int64), np.zeros(0)
        numbers = np.concatenate(numbers_all)
        unique, where = np.unique(numbers, return_inverse=True)
        summed = np.zeros(len(unique))
        np.add.at(summed, where, np.concatenate(scores_all))
        return unique.astype(np.int64), summed

    def search(self, query: str, k: int, captions_only: bool = False,
               keep: Callable[[str, int], bool] | None = None) -> list[KeywordHit]:
        """The `k` best documents for `query`, best first (ties: the earlier added first).
        With `captions_only` the file-name documents are left out; `keep(item id, caption
        number)` filters documents."""
        return list(itertools.islice(self._ranked(query, captions_only, keep), k))

    def search_items(self, query: str, k: int,
                     keep: Callable[[str, int], bool] | None = None) -> list[KeywordHit]:
        """The `k` best items: an item scores its best document (file name or a caption)."""
        best: dict[str, KeywordHit] = {}
        for hit in self._ranked(query, False, keep):
            if hit.item_id not in best:  # documents come best first
                best[hit.item_id] = hit
                if len(best) == k:
                    break
        return list(best.values())

    def _ranked(self, query: str, captions_only: bool,
                keep: Callable[[str, int], bool] | None) -> Iterator[KeywordHit]:
        numbers, scores = self.scores(query)
        if captions_only and len(numbers):
            is_caption = np.frombuffer(self.doc_caption, np.int32)[numbers] != NAME
            numbers, scores = numbers[is_caption], scores[is_caption]
        for i in np.lexsort((numbers, -scores)):
            number = int(numbers[i])
            item_id, caption = self.doc_item[number], self.doc_caption[number]
            if keep is None or keep(item_id, caption):
                yield KeywordHit(item_id, caption, float(scores[i]))

    def _alive(self) -> np.ndarray:
        if self._alive_view is None:
            self._alive_view = np.frombuffer(bytes(self.alive), np.uint8).astype(bool)
        return self._alive_view

    def _lengths(self) -> np.ndarray:
        if self._length_view is None:
            self._length_view = np.frombuffer(self.doc_length, np.int32).astype(np.float64)
        return self._length_view

    # --- saving and loading ------------------------------------------------------------
    def save(self, path: Path, generation: int) -> None:
        """The live documents, renumbered, in one .npz (written beside, then renamed)."""
        old = [n for numbers in self.docs_of.values() for n in numbers]
        renumber = np.full(len(self.doc_item), -1, np.int64)
        renumber[old] = np.arange(len(old))
        terms, offsets, docs, tfs = [], [0], [], []
        for term, slot in self.terms.items():
            kept = renumber[np.frombuffer(self._docs[slot], np.int32)]
            live = kept >= 0
            if not live.any():
                continue
            terms.append(term)
            docs.append(kept[live].astype(np.int32))
            tfs.append(np.frombuffer(self._tfs[slot], np.int32)[live])
            offsets.append(offsets[-1] + int(live.sum()))
        arrays = {
            "format": np.array([FORMAT, generation], np.int64),
            "terms": np.array(terms, dtype=str) if terms else np.zeros(0, "U1"),
            "offsets": np.array(offsets, np.int64),
            "docs": np.concatenate(docs) if docs else np.zeros(0, np.int32),
            "tfs": np.concatenate(tfs) if tfs else np.zeros(0, np.int32),
            "doc_item": np.array([self.doc_item[n] for n in old], dtype=str) if old
            else np.zeros(0, "U1"),
            "doc_caption": np.array([self.doc_caption[n] for n in old], np.int32),
            "doc_length": np.array([self.doc_length[n] for n in old], np.int32),
        }
        atomic_write(path, lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path: Path, generation: int) -> KeywordIndex | None:
        """The index saved for `generation`; None when the file is of another generation
        or format (then the caller builds it from the items)."""
        with np.load(path, allow_pickle=False) as data:
            form, saved = (int(x) for x in data["format"])
            if form != FORMAT or saved != generation:
                return None
            index = cls()
            offsets = data["offsets"].tolist()
            docs, tfs = data["docs"].astype(np.int32), data["tfs"].astype(np.int32)
            for slot, term in enumerate(data["terms"].tolist()):
                index.terms[term] = slot
                index._docs.append(_int_array(docs[offsets[slot] : offsets[slot + 1]]))
                index._tfs.append(_int_array(tfs[offsets[slot] : offsets[slot + 1]]))
            index.doc_item = data["doc_item"].tolist()
            index.doc_caption = _int_array(data["doc_caption"].astype(np.int32))
            index.doc_length = _int_array(data["doc_length"].astype(np.int32))
        index.alive = bytearray(b"\x01" * len(index.doc_item))
        index.live_docs = len(index.doc_item)
        index.live_length = int(sum(index.doc_length))
        for number, item_id in enumerate(index.doc_item):
            index.docs_of.setdefault(item_id, []).append(number)
        return index


def _int_array(values: np.ndarray) -> array:
    """An int32 numpy array as a growable array('i'), copied as bytes."""
    out = array("i")
    out.frombytes(np.ascontiguousarray(values, np.int32).tobytes())
    return out
