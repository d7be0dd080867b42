"""Adding folders of files to a collection, under its first name; it lives in
crossmodal.collection.ingest."""

from crossmodal.collection.ingest import AddReport, Embedded, add_paths, content_hash, plan

__all__ = ["AddReport", "Embedded", "add_paths", "content_hash", "plan"]
