"""RowIndex: positions after removals and appends, as a list with deletions would have them."""

from __future__ import annotations

import random

from crossmodal.index.rows import RowIndex


def test_positions_and_caption_spans_follow_a_list_with_deletions():
    rng = random.Random(0)
    items = [{"id": f"i{n}", "captions": ["c"] * rng.randint(0, 3)} for n in range(200)]
    rows = RowIndex(items)
    for step in range(30):
        gone = set(rng.sample(sorted(rows), 5))
        rows.remove(gone | {"never-there"})
        items = [item for item in items if item["id"] not in gone]
        new = [{"id": f"new{step}-{n}", "captions": ["c"] * n} for n in range(3)]
        rows.append(new)
        items += new
        texts = [item["id"] for item in items for _ in item["captions"]]
        assert list(rows) == [item["id"] for item in items] and len(rows) == len(items)
        for position, item in enumerate(items):
            assert rows[item["id"]] == position
            span = rows.captions_of(item["id"])
            assert [texts[t] for t in span] == [item["id"]] * len(item["captions"])
    assert "i0" not in rows or rows["i0"] == 0
