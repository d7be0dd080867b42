"""Shared set-up for the HTTP tests: a small colour index and an app over it."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from crossmodal.engine import Collection


def build_index(tmp_path: Path, colour_folder: Path, encoder) -> Path:
    path = tmp_path / "index"
    Collection.create(path, model="fake:colours", encoder=encoder).add_paths(
        [colour_folder], progress=False)
    return path


def png_bytes(colour: tuple[int, int, int], size=(20, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def local_client(app, **kwargs):
    """A test client that calls the app as a browser on this machine would: by 127.0.0.1
    (the app refuses unknown Host names such as TestClient's default 'testserver')."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1:8000", **kwargs)


@contextlib.contextmanager
def serving(app, **uvicorn_options) -> Iterator[str]:
    """Run `app` in a real uvicorn server on a free 127.0.0.1 port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = {"log_level": "warning", **uvicorn_options}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def big_rgba_png(side: int) -> bytes:
    """A solid side x side RGBA PNG, compressed row by row (never side**2 * 4 bytes at once):
    6320 px is 40 MP, 160 MB decoded, ~170 KB on the wire."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    packer = zlib.compressobj(9)
    row = b"\0" + bytes((200, 30, 30, 255)) * side  # filter byte 0, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))
