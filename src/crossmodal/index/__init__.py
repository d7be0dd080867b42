"""Vector stores on disk: a manifest, vectors, item metadata and a faiss index."""
