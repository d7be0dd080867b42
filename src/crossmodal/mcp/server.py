"""The MCP server: search an index by text, by image (a path or base64), by an indexed item,
and read an item (its record, and a thumbnail as MCP image content).

It reads the index and never writes it. Commits made meanwhile by `crossmodal index` or a
`crossmodal serve` are picked up before the next tool call (the index is reopened when its
generation or log has moved). Bad arguments come back as a tool error with one clear line.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from crossmodal.collection.collection import Collection, Hit
from crossmodal.collection.targets import is_collection_uri, open_collection
from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.errors import BadInputError, CrossmodalError
from crossmodal.item_ids import normal_item_id, normal_query_id
from crossmodal.models.protocol import Encoder

MAX_IMAGE_BYTES = 16 * 1024 * 1024  # as the HTTP server's body cap
MAX_PIXELS = 40_000_000
MAX_K = 100
THUMBNAIL_SIDE = 256
Target = Literal["images", "texts"]
Mode = Literal["vector", "keyword", "hybrid"]
INSTRUCTIONS = (
    "Search a collection of photos and their captions. search_text finds photos (or "
    "captions, target='texts') for a description in the index's language; search_image "
    "finds ones like an image (a local file path or base64 bytes); search_like finds ones "
    "like an indexed item; get_item reads an item's record and shows its thumbnail. Scores "
    "are cosines: compare them within one index only. min_score drops weak hits: a number, "
    "or 'auto' for the model's calibrated cut-off."
)


class IndexView:
    """The index, reopened when another process has committed to it since (a collection in
    Milvus, addressed by URI, reads the latest state on every call: nothing to reopen)."""

    def __init__(self, path: str | Path, encoder: Encoder | None = None):
        self.path = path if is_collection_uri(path) else Path(path)
        self._collection = open_collection(self.path, encoder=encoder)
        self.encoder = self._collection.encoder  # loaded now: the first call is not slow

    def current(self) -> Collection:
        if isinstance(self.path, Path) and (
                self._collection.disk_stamp() != self._collection.stamp()):
            self._collection = Collection.open(self.path, encoder=self.encoder)
        return self._collection


def hits_out(hits: list[Hit]) -> dict[str, Any]:
    return {"hits": [{"rank": h.rank, "score": round(h.score, 5), "id": h.id, "kind": h.kind,
                      "item_id": h.item_id, "path": h.path, "text": h.text,
                      "captions": h.captions} for h in hits]}


def image_bytes(path: str | None, image_base64: str | None) -> bytes:
    """The query image of search_image: exactly one of a local file or base64 bytes."""
    if (path is None) == (image_base64 is None):
        raise BadInputError("give exactly one of path (a local image file) or image_base64")
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise BadInputError(f"no image file at {path}")
        if file.stat().st_size > MAX_IMAGE_BYTES:
            raise BadInputError(f"{path} is over {MAX_IMAGE_BYTES // 2**20} MB")
        return file.read_bytes()
    text = image_base64.partition(",")[2] if image_base64.startswith("data:") else image_base64
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadInputError(f"image_base64 is over {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadInputError("image_base64 is not valid base64") from None


def thumbnail_jpeg(path: str, side: int = THUMBNAIL_SIDE) -> bytes:
    image = load_image(path, max_pixels=MAX_PIXELS, target_size=side)
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _clear_errors(tool: Callable) -> Callable:
    """Known errors reach the client as their one line (an unexpected one is hidden)."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(tool)
    def wrapped(*args, **kwargs):
        try:
            return tool(*args, **kwargs)
        except CrossmodalError as exc:
            raise ToolError(str(exc)) from None
    return wrapped


def _check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise BadInputError(f"k must be between 1 and {MAX_K}, not {k}")
    return k


def build_server(index: str | Path, encoder: Encoder | None = None):
    """An MCPServer with the four tools over the index at `index`."""
    from mcp.server.mcpserver import Image, MCPServer

    view = IndexView(index, encoder)
    server = MCPServer("crossmodal", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    @_clear_errors
    def search_text(query: str, k: int = 10, target: Target = "images",
                    min_score: float | str | None = None,
                    where: str | None = None, mode: Mode = "vector") -> dict[str, Any]:
        """Photos (target='images') or captions (target='texts') that match a text query.
        min_score: a cosine, or 'auto' / 'p90' / 'p50'. where: a metadata filter, e.g.
        'folder = "beach"'. mode: 'vector' (meaning), 'keyword' (exact words of captions
        and file names, e.g. a product code) or 'hybrid' (both, fused)."""
        return hits_out(view.current().search_text(query, k=_check_k(k), target=target,
                                                   where=where, min_score=min_score,
                                                   mode=mode))

    @server.tool()
    @_clear_errors
    def search_image(path: str | None = None, image_base64: str | None = None, k: int = 10,
                     target: Target = "images",
                     min_score: float | str | None = None) -> dict[str, Any]:
        """Photos or captions like an image: a local file `path`, or its bytes as
        `image_base64` (exactly one)."""
        data = image_bytes(path, image_base64)
        return hits_out(view.current().search_image(data, k=_check_k(k), target=target,
                                                    min_score=min_score))

    @server.tool()
    @_clear_errors
    def search_like(id: str, k: int = 10, target: Target | None = None,
                    min_score: float | str | None = None) -> dict[str, Any]:
        """Photos or captions like an indexed item: its id (its photo) or ITEM#K (its K-th
        caption); the item itself is left out."""
        return hits_out(view.current().search_like(normal_query_id(id), k=_check_k(k),
                                                   target=target, min_score=min_score))

    @server.tool(structured_output=False)
    @_clear_errors
    def get_item(id: str, thumbnail: bool = True) -> list:
        """An item's record (id, path, captions, metadata) as JSON, and its thumbnail."""
        import json

        item = dict(view.current().item(normal_item_id(id)))
        content: list = [json.dumps(item, ensure_ascii=False)]
        if thumbnail:
            try:
                content.append(Image(data=thumbnail_jpeg(item["path"]), format="jpeg"))
            except (OSError, ImageLoadError, CrossmodalError) as exc:  # moved, unreadable
                content.append(f"(no thumbnail: {exc})")
        return content

    return server


def run_stdio(index: str | Path, encoder: Encoder | None = None) -> None:
    """Serve the index over stdin/stdout until the client closes them."""
    build_server(index, encoder).run("stdio")
