"""Two `crossmodal serve` processes over one collection in the suite's real Milvus server,
each taking uploads and deletes while `crossmodal index` writes from a third process:
nothing acknowledged is lost, every search is answered, and a change made through one
server is seen through the other within the stated bound."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crossmodal.collection.milvus_collection import MilvusCollection
from crossmodal.collection.milvus_schema import STALENESS_MS
from tests.image_helpers import write_image
from tests.serve_helpers import png_bytes

httpx = pytest.importorskip("httpx")
REPO = Path(__file__).resolve().parents[2]
# The real command line, in a process of its own, with the fake model registered first.
LAUNCH = f"""
import sys
sys.path[:0] = [{str(REPO / "src")!r}, {str(REPO)!r}]
from crossmodal.models import registry
from tests.fakes import FakeEncoder
registry.register_backend("fake", lambda name, model_id: FakeEncoder(model_id))
from crossmodal.cli.main import cli
cli(sys.argv[1:], prog_name="crossmodal")
"""
UPLOADS_PER_SERVER = 8
CLI_IMAGES = 30
# Seen through the other server within the bound; the slack is one HTTP round trip on a
# loaded 2-core machine (a poll that started before the bound ran out).
SLACK_S = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _crossmodal(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", LAUNCH, *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def _servers(target: str, uploads: Path, logs: Path, count: int = 2):
    ports = [_free_port() for _ in range(count)]
    processes = [_crossmodal("serve", target, "--port", str(port), "--rate-limit", "0",
                             "--uploads-dir", str(uploads), "--log-level", "warning",
                             log=logs / f"serve-{port}.log") for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 180
        for url, process, port in zip(urls, processes, ports, strict=True):
            while True:
                assert process.poll() is None, (logs / f"serve-{port}.log").read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, "a server did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


class Traffic:
    """One client per server: uploads, deletes through the other server, searches."""

    def __init__(self, urls: list[str]):
        self.urls = urls
        self.kept: set[str] = set()
        self.removed: set[str] = set()
        self.lags: list[float] = []
        self.searches = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def run(self, me: int) -> None:
        try:
            self._run(me)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.failures.append(f"client {me}: {exc!r}")

    def _run(self, me: int) -> None:
        mine, other = self.urls[me], self.urls[1 - me]
        with httpx.Client(timeout=60) as http:
            for j in range(UPLOADS_PER_SERVER):
                item_id = f"server{me}/up{j}.png"
                colour = (40 * j % 256, 200 if me else 20, 90)
                answer = http.post(f"{mine}/api/items",
                                   files={"file": ("x.png", png_bytes(colour), "image/png")},
                                   data={"id": item_id, "captions": f"upload {j}"})
                assert answer.status_code == 201, answer.text
                acknowledged = time.monotonic()
                with self._lock:
                    self.kept.add(item_id)
                self._wait_until(http, other, item_id, 200, acknowledged)
                thumbnail = http.get(f"{other}/api/thumbnails/{item_id}")  # a shared folder
                assert thumbnail.status_code == 200, thumbnail.text
                self._search(http, mine)
                self._search(http, other)
                if j % 2:  # every other upload is deleted through the other server
                    gone = http.delete(f"{other}/api/items/{item_id}")
                    assert gone.status_code == 200, gone.text
                    acknowledged = time.monotonic()
                    with self._lock:
                        self.kept.discard(item_id)
                        self.removed.add(item_id)
                    self._wait_until(http, mine, item_id, 404, acknowledged)

    def _wait_until(self, http, url: str, item_id: str, status: int, since: float) -> None:  # noqa: ANN001
        while True:
            if http.get(f"{url}/api/items/{item_id}").status_code == status:
                with self._lock:
                    self.lags.append(time.monotonic() - since)
                return
            assert time.monotonic() - since < 30, f"{item_id} never became {status} at {url}"
            time.sleep(0.02)

    def _search(self, http, url: str) -> None:  # noqa: ANN001
        answer = http.post(f"{url}/api/search/text", json={"query": "red", "k": 5})
        assert answer.status_code == 200, answer.text
        assert answer.json()["hits"], "a search found nothing"
        with self._lock:
            self.searches += 1


def test_two_servers_and_a_cli_writer_share_one_collection(
        milvus_target, colour_folder, fake_encoder, tmp_path):
    start = MilvusCollection.create(milvus_target, model="fake:colours", encoder=fake_encoder)
    start.add_paths([colour_folder], progress=False)
    more = tmp_path / "more"
    for i in range(CLI_IMAGES):
        write_image(more / f"cli{i:02d}.png", (i * 8, 255 - i * 8, 128))
    uploads = tmp_path / "shared-uploads"
    with _servers(milvus_target, uploads, tmp_path) as urls:
        writer = _crossmodal("index", str(more), "--into", milvus_target, "--quiet",
                             "--batch-size", "4", log=tmp_path / "index.log")
        traffic = Traffic(urls)
        clients = [threading.Thread(target=traffic.run, args=(me,)) for me in (0, 1)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(300)
        assert writer.wait(300) == 0, (tmp_path / "index.log").read_text()
        assert not traffic.failures, traffic.failures
        time.sleep(STALENESS_MS / 1000)  # every change is past the bound now
        expected = 4 + CLI_IMAGES + len(traffic.kept)
        with httpx.Client(timeout=60) as http:
            for url in urls:
                stats = http.get(f"{url}/api/stats").json()
                assert stats["items"] == expected, (url, stats)
                for item_id in sorted(traffic.kept) + [f"cli{i:02d}.png" for i in range(30)]:
                    assert http.get(f"{url}/api/items/{item_id}").status_code == 200, item_id
                for item_id in traffic.removed:
                    assert http.get(f"{url}/api/items/{item_id}").status_code == 404, item_id
    assert len(traffic.kept) == len(traffic.removed) == UPLOADS_PER_SERVER
    assert traffic.searches == 4 * UPLOADS_PER_SERVER
    print(f"seen through the other server after: max {max(traffic.lags) * 1000:.0f} ms, "
          f"median {sorted(traffic.lags)[len(traffic.lags) // 2] * 1000:.0f} ms "
          f"({len(traffic.lags)} changes; bound {STALENESS_MS} ms)")
    assert max(traffic.lags) <= STALENESS_MS / 1000 + SLACK_S
    assert len(start) == expected  # and through the library, as a third reader
    start.close()
