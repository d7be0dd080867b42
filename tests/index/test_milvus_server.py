"""A Milvus server that goes away: HTTP 503 and one CLI line, not a 500 or a traceback. Uses
its own server (the session's one stays up for the other tests)."""

from __future__ import annotations

import os
import socket

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from tests.milvus_server import MilvusServer, unavailable


@pytest.fixture
def own_server(tmp_path):
    pytest.importorskip("milvus", reason="the milvus package (a Milvus server) is not installed")
    server = MilvusServer(tmp_path / "milvus-data")
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any failure: fail in CI, skip elsewhere
        server.stop()
        unavailable(str(exc))
    yield server
    server.stop()
    from crossmodal.index.milvus_store import CLIENTS

    CLIENTS.release_all()


def test_an_unreachable_server_is_503_and_one_cli_line(tmp_path, colour_folder, fake_encoder,
                                                        own_server):
    from crossmodal.serve.app import create_app
    from tests.serve_helpers import local_client

    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder,
                                   store=f"milvus:{own_server.uri}")
    collection.add_paths([colour_folder], progress=False)
    collection.close()
    http = local_client(create_app(index, encoder=fake_encoder))
    query = {"query": "red", "k": 1, "target": "images"}
    assert http.post("/api/search/text", json=query).json()["hits"][0]["id"] == "red.jpg"

    group = own_server.process.pid
    own_server.stop()
    with pytest.raises(ProcessLookupError):  # nothing of the server is left running
        os.killpg(group, 0)
    answer = http.post("/api/search/text", json=query)
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith(f"cannot reach Milvus at {own_server.uri}")
    result = CliRunner().invoke(cli, ["search", str(index), "red"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot reach Milvus at {own_server.uri}")
    assert result.output.count("\n") == 1, result.output  # one line, no traceback


def test_the_server_fixture_refuses_a_moved_port_and_fails_only_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needed in CI"):
        unavailable("no server")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no Milvus server here"):
        unavailable("no server")
    pytest.importorskip("milvus", reason="the milvus package (a Milvus server) is not installed")
    with socket.socket() as taken:  # the wrapper would quietly move to the next port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MilvusServer(tmp_path / "moved", port=taken.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="moved from port"):
                server.start(timeout_s=60)
        finally:
            server.stop()
