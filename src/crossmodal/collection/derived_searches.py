"""Searches made from a collection's own `search_vectors` and `indexed_query`: items like an
indexed one, and query arithmetic. One home for folder indexes and Milvus collections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crossmodal.index.filters import Filter, parse_filter
from crossmodal.query_terms import QueryTerm, combined_vector


class DerivedSearches:
    """For a collection with `search_vectors(queries, k, target, threads, where, min_score)`
    and `indexed_query(item_id) -> (vector, "images" | "texts")`."""

    search_vectors: Any
    indexed_query: Any

    def search_like(self, item_id: str, k: int = 10, target: str | None = None,
                    where: str | Filter | None = None,
                    min_score: float | str | None = None) -> list:
        """Items similar to an indexed one: an item id (image) or `ITEM#K` (its K-th caption)."""
        vector, own = self.indexed_query(item_id)
        hits = self.search_vectors(vector, k + 1, target or own, where=where,
                                   min_score=min_score)[0]
        hits = [h for h in hits if h.id != item_id][:k]  # the query itself is no answer
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
        return hits

    def search_combined(self, terms: Sequence[QueryTerm], k: int = 10, target: str = "images",
                        where: str | Filter | None = None, long_text: str | None = None,
                        min_score: float | str | None = None) -> list:
        """Query arithmetic: the `k` best hits for the normalised weighted sum of texts,
        images and indexed items (crossmodal.query_terms; a negative weight subtracts)."""
        vector = combined_vector(self, terms, long_text)
        return self.search_vectors(vector, k, target, 1, parse_filter(where), min_score)[0]
