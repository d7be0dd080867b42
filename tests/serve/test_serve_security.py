"""The server against the browser it serves: foreign pages, rebinding, proxies, big bodies."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("multipart")

from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.serve_helpers import build_index, local_client, png_bytes, serving  # noqa: E402

TOKEN = "s3cret-token-for-tests"
EVIL = "http://evil.example"


@pytest.fixture
def index_path(tmp_path, colour_folder, fake_encoder):
    return build_index(tmp_path, colour_folder, fake_encoder)


@pytest.fixture
def make_client(index_path, fake_encoder):
    def make(**settings):
        return local_client(create_app(index_path, ServeSettings(**settings),
                                       encoder=fake_encoder))
    return make


def upload(colour=(240, 240, 0), **data):
    return {"files": {"file": ("y.png", png_bytes(colour), "image/png")}, "data": data}


def test_cross_origin_writes_are_refused(make_client):
    client = make_client()
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://127.0.0.1:9999"}):  # another local port is another site
        refused = client.post("/api/items", headers=headers, **upload(id="csrf.png"))
        assert refused.status_code == 403, (headers, refused.text)
        assert "cross-origin" in refused.json()["detail"]
        assert client.delete("/api/items/red.jpg", headers=headers).status_code == 403
        searched = client.post("/api/search/text", json={"query": "red"}, headers=headers)
        assert searched.status_code == 403
    assert client.get("/api/stats").json()["items"] == 4  # nothing was written
    assert client.get("/api/stats", headers={"Origin": EVIL}).status_code == 200  # reads: CORS

    own_page = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/items", headers=own_page, **upload(id="mine.png")).status_code == 201
    assert client.post("/api/items", **upload((1, 2, 3), id="curl.png")).status_code == 201

    allowed = make_client(cors_origins=("https://ok.example",))
    ok = allowed.post("/api/items", headers={"Origin": "https://ok.example"},
                      **upload(id="ok.png"))
    assert ok.status_code == 201 and ok.headers["access-control-allow-origin"] == \
        "https://ok.example"


def test_unknown_host_names_are_refused(make_client):
    client = make_client()
    for path in ("/", "/api/health", "/api/stats"):
        refused = client.get(path, headers={"Host": "attacker.example"})
        assert refused.status_code == 400 and "unknown Host" in refused.json()["detail"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST."):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    named = make_client(allowed_hosts=("search.example",))
    assert named.get("/api/health", headers={"Host": "search.example:443"}).status_code == 200
    assert named.get("/api/health", headers={"Host": "other.example"}).status_code == 400

    everywhere = make_client(host="0.0.0.0", token=TOKEN)  # the machine's addresses are many
    assert everywhere.get("/api/health", headers={"Host": "192.168.1.20:8000"}).status_code == 200
    assert everywhere.get("/api/health", headers={"Host": "rebind.example"}).status_code == 400


def call_raw(app, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict, int]:
    """Call the ASGI app with a body that counts how often it is read: (status, body, reads)."""
    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1_000_000, "more_body": True}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), reads


def test_refusals_come_before_the_body_is_read(index_path, fake_encoder):
    app = create_app(index_path, ServeSettings(token=TOKEN, rate_per_second=1, rate_burst=1),
                     encoder=fake_encoder)
    upload_headers = {"host": "127.0.0.1:8000", "content-length": str(15_000_000),
                      "content-type": "multipart/form-data; boundary=x"}
    status, body, reads = call_raw(app, "POST", "/api/items", upload_headers)
    assert (status, reads) == (401, 0) and "bearer token" in body["detail"]

    auth = {**upload_headers, "authorization": f"Bearer {TOKEN}"}
    assert call_raw(app, "POST", "/api/items", {**auth, "origin": EVIL})[::2] == (403, 0)
    assert call_raw(app, "POST", "/api/items", auth)[::2] == (429, 0)  # the burst is spent
    assert call_raw(app, "POST", "/api/items", {**auth, "host": "evil.example"})[::2] == (400, 0)

    client = local_client(app)  # 1,500 form fields: refused for the token, not for the fields
    fields = {f"f{i}": "v" for i in range(1500)}
    refused = client.post("/api/items", data=fields, files={"file": ("a.png", b"x")})
    assert refused.status_code == 401


def test_a_body_over_the_limit_gets_its_413(index_path, fake_encoder):
    app = create_app(index_path, ServeSettings(max_body_bytes=1024 * 1024), encoder=fake_encoder)
    caption = "a" * (10 * 1024 * 1024)
    with serving(app) as url:
        for _ in range(2):  # a second upload: the server is still there for the next one
            response = httpx.post(url + "/api/items", timeout=30,
                                  files={"file": ("y.png", png_bytes((1, 1, 1)), "image/png")},
                                  data={"captions": caption})
            assert response.status_code == 413 and "limit" in response.json()["detail"]

        def chunks():  # no Content-Length: counted while it streams, drained, answered
            for _ in range(200):
                yield b"x" * 64 * 1024

        streamed = httpx.post(url + "/api/search/text", content=chunks(), timeout=30,
                              headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(index_path, fake_encoder):
    from crossmodal.cli.serve_commands import uvicorn_options

    def codes(settings: ServeSettings) -> list[int]:
        app = create_app(index_path, settings, encoder=fake_encoder)
        with serving(app, **uvicorn_options(settings)) as url, httpx.Client() as client:
            return [client.get(url + "/api/stats",
                               headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
                    for i in range(6)]

    # Each spoofed address would otherwise get a fresh bucket of 3.
    assert codes(ServeSettings(rate_per_second=0.01, rate_burst=3))[3:] == [429] * 3
    trusted = ServeSettings(rate_per_second=0.01, rate_burst=3, trusted_proxies=("127.0.0.1",))
    assert codes(trusted) == [200] * 6  # behind a named proxy: one bucket per real client


def test_not_found_names_the_id_never_the_index_folder(make_client, index_path):
    client = make_client()
    for response in (client.post("/api/search/like", json={"id": "nope.jpg"}),
                     client.get("/api/items/nope.jpg"), client.delete("/api/items/nope.jpg"),
                     client.get("/api/thumbnails/nope.jpg")):
        assert response.status_code == 404 and "nope.jpg" in response.json()["detail"]
        assert str(index_path) not in response.text and str(index_path.parent) not in \
            response.text


def test_ids_are_normalised_or_refused_at_add(make_client):
    client = make_client()
    added = client.post("/api/items", **upload(id="new/yellow.png\n"))
    assert added.status_code == 201 and added.json()["id"] == "new/yellow.png"
    assert client.get("/api/items/new/yellow.png").status_code == 200
    dotted = client.post("/api/items", **upload((1, 2, 3), id="./a/./b.png"))
    assert dotted.status_code == 201 and dotted.json()["id"] == "a/b.png"
    like = client.post("/api/search/like", json={"id": "./a//b.png", "k": 1})
    assert like.status_code == 200, like.text
    assert client.post("/api/search/like", json={"id": "a/b.png#0"}).status_code == 404
    for bad, words in ((".", "names no item"), ("a\nb.png", "control character"),
                       ("/etc/x.png", "relative path"), ("a/../b.png", "relative path"),
                       ("a b.png", "letters, digits")):
        refused = client.post("/api/items", **upload((4, 5, 6), id=bad))
        assert refused.status_code == 400 and words in refused.json()["detail"], bad
    assert client.get("/api/stats").json()["items"] == 6


def test_cli_looks_ids_up_by_the_same_rule(index_path, fake_encoder):
    from click.testing import CliRunner

    from crossmodal.cli.main import cli

    runner = CliRunner()
    found = runner.invoke(cli, ["search", str(index_path), "--like", "./sub//blue.webp", "--k",
                                "1"])
    assert found.exit_code == 0, found.output
    bad = runner.invoke(cli, ["search", str(index_path), "--like", "../x.jpg"])
    assert bad.exit_code == 2 and "relative path" in bad.output
    removed = runner.invoke(cli, ["remove", str(index_path), "./red.jpg"])
    assert removed.exit_code == 0 and "removed 1 item;" in removed.output


def test_schema_declares_a_token_only_when_there_is_one(make_client):
    open_schema = make_client().get("/openapi.json").json()
    assert "securitySchemes" not in open_schema.get("components", {})
    assert not any("security" in op for path in open_schema["paths"].values()
                   for op in path.values())
    assert "401" not in open_schema["paths"]["/api/stats"]["get"]["responses"]
    locked = make_client(token=TOKEN).get("/openapi.json").json()
    assert locked["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert locked["paths"]["/api/stats"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "401" in locked["paths"]["/api/stats"]["get"]["responses"]


def test_method_not_allowed_lists_every_method_of_the_path(make_client):
    response = make_client().post("/api/items/red.jpg")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"DELETE", "GET"}
    assert "DELETE" in response.json()["detail"]
    read_only = make_client(allow_writes=False).delete("/api/items/red.jpg")
    assert read_only.status_code == 405 and "DELETE" not in read_only.headers["allow"]


def test_cli_passes_proxy_and_host_options_to_uvicorn(index_path, fake_encoder, monkeypatch):
    import uvicorn
    from click.testing import CliRunner

    from crossmodal.cli.main import cli
    from crossmodal.errors import BadInputError

    started: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(
        {**options, "settings": app.state.settings}))
    runner = CliRunner()
    assert runner.invoke(cli, ["serve", str(index_path)]).exit_code == 0
    assert started[-1]["proxy_headers"] is False and "forwarded_allow_ips" not in started[-1]
    proxied = runner.invoke(cli, ["serve", str(index_path), "--trusted-proxy", "10.0.0.0/8",
                                  "--allowed-host", "search.example"])
    assert proxied.exit_code == 0, proxied.output
    assert started[-1]["proxy_headers"] is True
    assert started[-1]["forwarded_allow_ips"] == ["10.0.0.0/8"]
    assert "search.example" in started[-1]["settings"].host_names
    with pytest.raises(BadInputError, match="not an IP address or network"):
        ServeSettings(trusted_proxies=("proxy.example",))
