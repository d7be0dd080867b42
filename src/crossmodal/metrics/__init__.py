"""Retrieval metrics from similarity matrices and the positives of each query."""

from crossmodal.metrics.ranking import first_positive_ranks, retrieval_report

__all__ = ["first_positive_ranks", "retrieval_report"]
