"""Isolate every test: caches in tmp, hub offline, no network except loopback."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: it reads these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.fakes import FakeEncoder, as_fake_backend  # noqa: E402
from tests.image_helpers import write_image  # noqa: E402
from tests.milvus_server import milvus_server_uri, milvus_target  # noqa: E402, F401 - fixtures


@pytest.fixture(scope="session")
def shared_export_cache(tmp_path_factory) -> Path:
    """One ONNX export cache for the whole session: a towers: export takes ~10-20 s."""
    return tmp_path_factory.mktemp("onnx-exports")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch, shared_export_cache):
    monkeypatch.setenv("CROSSMODAL_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("CROSSMODAL_ONNX_CACHE", str(shared_export_cache))
    monkeypatch.delenv("CROSSMODAL_RUNTIME", raising=False)
    monkeypatch.delenv("CROSSMODAL_THREADS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")
                                          or host.startswith("/")):
            raise RuntimeError(f"tests must not reach the network (tried {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


@pytest.fixture
def fake_encoder(monkeypatch) -> FakeEncoder:
    encoder = FakeEncoder()
    yield from as_fake_backend(monkeypatch, encoder)


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    """Three solid-colour photos with sidecar captions, one without captions."""
    root = tmp_path / "photos"
    write_image(root / "red.jpg", (250, 10, 10))
    (root / "red.txt").write_text("a red square\nred thing\n", encoding="utf-8")
    write_image(root / "green.png", (10, 250, 10))
    (root / "green.txt").write_text("green field\n", encoding="utf-8")
    write_image(root / "sub" / "blue.webp", (10, 10, 250))
    (root / "sub" / "blue.webp.txt").write_text("deep blue sea\n   \n", encoding="utf-8")
    write_image(root / "nocaption.bmp", (120, 120, 120))
    return root
