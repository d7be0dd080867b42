from __future__ import annotations

import numpy as np

from crossmodal.metrics.ranking import first_positive_ranks, retrieval_report, summarize_ranks


def brute_force_ranks(scores, positives):
    ranks = []
    for row, pos in zip(scores, positives, strict=True):
        best = max(row[p] for p in pos)
        ahead = sum(1 for j, s in enumerate(row) if s >= best and j not in pos)
        ranks.append(ahead + 1)
    return np.array(ranks)


def test_ranks_match_brute_force_with_several_positives():
    rng = np.random.default_rng(0)
    queries, gallery = rng.standard_normal((40, 6)), rng.standard_normal((90, 6))
    positives = [list(rng.choice(90, rng.integers(1, 5), replace=False)) for _ in range(40)]
    ranks = first_positive_ranks(queries, gallery, positives, chunk=7)
    np.testing.assert_array_equal(ranks, brute_force_ranks(queries @ gallery.T, positives))


def test_ties_count_pessimistically():
    queries = np.ones((1, 2))
    gallery = np.ones((5, 2))  # every item scores the same
    assert first_positive_ranks(queries, gallery, [[3]])[0] == 5
    assert first_positive_ranks(queries, gallery, [[3, 4]])[0] == 4


def test_summary_and_report():
    summary = summarize_ranks(np.array([1, 2, 6, 11]))
    assert summary["R@1"] == 25.0 and summary["R@5"] == 50.0 and summary["R@10"] == 75.0
    assert summary["MedR"] == 4.0 and summary["MnR"] == 5.0
    image = np.eye(3, dtype=np.float32)
    text = np.repeat(image, 2, axis=0)  # two perfect captions per image
    report = retrieval_report(image, text, [0, 0, 1, 1, 2, 2])
    assert report["rsum"] == 600.0
    assert report["image_to_text"]["MedR"] == 1.0
