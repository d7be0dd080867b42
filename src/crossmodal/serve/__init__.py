"""`crossmodal serve`: the HTTP API and web page over one index (FastAPI)."""

from crossmodal.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(index_path, settings: ServeSettings | None = None, encoder=None):
    """The FastAPI app for the index at `index_path` (imported lazily: fastapi is an extra)."""
    from crossmodal.serve.app import create_app as _create_app

    return _create_app(index_path, settings, encoder=encoder)
