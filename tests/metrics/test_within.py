"""Uni-modal retrieval metrics against brute force, the query excluded from its gallery."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal.metrics.within import evaluate_within


def brute_force(emb: np.ndarray, groups: list[int]) -> dict:
    first, precisions = [], []
    for q, group in enumerate(groups):
        positives = {j for j, g in enumerate(groups) if g == group and j != q}
        if not positives:
            continue
        scores = emb @ emb[q]
        others = [j for j in range(len(groups)) if j != q]
        # the j-th best positive ranks at j + the negatives scoring >= it (pessimistic ties)
        best_first = sorted((scores[p] for p in positives), reverse=True)
        ranks = [j + sum(scores[n] >= score for n in others if n not in positives)
                 for j, score in enumerate(best_first, 1)]
        first.append(ranks[0])
        r = len(positives)
        precisions.append(sum((i + 1) / rank for i, rank in enumerate(ranks) if rank <= r) / r)
    first = np.array(first)
    return {"R@1": 100 * np.mean(first <= 1), "R@5": 100 * np.mean(first <= 5),
            "mAP@R": 100 * np.mean(precisions)}


def test_matches_brute_force_and_never_counts_the_query_itself():
    rng = np.random.default_rng(0)
    groups = [int(g) for g in rng.integers(0, 6, 60)] + [99]  # 99: alone, never queries
    # small integers: exact dot products in float32, so ties are real ties in both paths
    emb = rng.integers(-2, 3, (61, 8)).astype(np.float32)
    emb[:, 0] += np.array(groups) % 3  # some structure
    report = evaluate_within(emb, groups)
    expected = brute_force(emb, groups)
    assert report["queries"] == 60 and report["gallery"] == 60
    for key, value in expected.items():
        assert report["within"][key] == pytest.approx(value, abs=1e-9), key


def test_identical_items_of_one_group_find_each_other_first():
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 2, 3, 3]]
    report = evaluate_within(emb, [0, 0, 1, 1, 2, 2, 3, 3])
    assert report["within"]["R@1"] == 100.0 and report["within"]["mAP@R"] == 100.0
    # Were the query its own answer, a one-positive group could not reach R@1 = 100 with
    # the self row tied at the top; and a model mapping everything to one point gets ties.
    flat = evaluate_within(np.ones((8, 4), np.float32), [0, 0, 1, 1, 2, 2, 3, 3])
    assert flat["within"]["R@1"] == 0.0  # pessimistic ties: 6 negatives tie with the positive
    with pytest.raises(ValueError, match="no group holds two items"):
        evaluate_within(np.eye(3, dtype=np.float32), [0, 1, 2])
