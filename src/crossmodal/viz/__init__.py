"""Pictures of embeddings and retrievals (embedding maps, retrieval grids, heat maps) and the
self-contained HTML evaluation report. Needs the `viz` extra (matplotlib, scikit-learn)."""
