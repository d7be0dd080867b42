"""crossmodal: image-text cross-modal retrieval.

The Python API mirrors the CLI::

    import crossmodal
    col = crossmodal.Collection.create("my-index", model="towers:lite-en")
    col.add_paths(["photos/"])
    hits = col.search_text("a dog running on grass", k=5)

Heavy dependencies (torch, faiss) load only when a model or index is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossmodal.version import __version__

if TYPE_CHECKING:
    from crossmodal.collection.collection import Collection, Hit

__all__ = ["Collection", "Hit", "load_encoder", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy exports keep `import crossmodal` free of torch/faiss start-up cost.
    if name in ("Collection", "Hit"):
        from crossmodal import engine

        return getattr(engine, name)
    if name == "load_encoder":
        from crossmodal.models.registry import load_encoder

        return load_encoder
    raise AttributeError(name)
