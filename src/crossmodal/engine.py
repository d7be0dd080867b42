"""The collection API under its first name: `from crossmodal.engine import Collection, Hit`.

It lives in crossmodal.collection (the in-memory state, the commit protocol, the API)."""

from crossmodal.collection.collection import Collection, Hit, normal_target
from crossmodal.collection.state import TARGETS

__all__ = ["TARGETS", "Collection", "Hit", "normal_target"]
