"""Retrieval metrics from similarity matrices and the positives of each query."""

from crossmodal.metrics.evaluate import evaluate, evaluate_folds, evaluate_pairs
from crossmodal.metrics.ranks import positive_ranks, positive_ranks_from_scores
from crossmodal.metrics.retrieval import direction_metrics, map_at_r, r_precision

__all__ = [
    "direction_metrics", "evaluate", "evaluate_folds", "evaluate_pairs", "map_at_r",
    "positive_ranks", "positive_ranks_from_scores", "r_precision",
]
