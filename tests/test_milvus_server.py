"""A Milvus server that goes away: HTTP 503 and one CLI line, not a 500 or a traceback. Uses
its own server (the session's one stays up for the other tests)."""

from __future__ import annotations

import os

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
    from fastapi.testclient import TestClient

    from crossmodal.serve.app import create_app

    index = tmp_path / "index"
    collection = Collection.create(index, model="fake:colours", encoder=fake_encoder,
                                   store=f"milvus:{own_server.uri}")
    collection.add_paths([colour_folder], progress=False)
    collection.close()
    http = TestClient(create_app(index, encoder=fake_encoder))
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
