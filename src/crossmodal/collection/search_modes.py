"""The search modes of a text query and the default one (imports nothing: the CLI reads them
when it starts; crossmodal.collection.hybrid runs them)."""

MODES = ("vector", "keyword", "hybrid")
# Chosen by benchmarks/accuracy/hybrid_search.py on Flickr8k val (docs/guide/search-options.md).
DEFAULT_MODE = "vector"
