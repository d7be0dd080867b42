"""`serve --watch DIR`: the folder is followed into the index beside the server's own
uploads; neither writer undoes the other, and the server answers for both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from crossmodal.cli.watching import follow_in_background
from crossmodal.engine import Collection
from crossmodal.serve import ServeSettings, create_app
from tests.image_helpers import write_image
from tests.paths import REPO
from tests.serve_helpers import build_index, local_client, png_bytes

TIMEOUT_S = 20.0


def test_uploads_and_a_watched_folder_share_the_index(tmp_path, colour_folder, fake_encoder):
    index = build_index(tmp_path, colour_folder, fake_encoder)
    app = create_app(index, ServeSettings(), encoder=fake_encoder)
    client = local_client(app)
    watcher = follow_in_background(index, colour_folder, app.state.live.encoder)
    try:
        def save_photos() -> None:
            for n in range(8):
                write_image(colour_folder / "camera" / f"{n}.jpg", (n * 30, 90, 200))
                time.sleep(0.05)

        saving = threading.Thread(target=save_photos)
        saving.start()
        uploaded = []
        for n in range(8):  # at the same time, over HTTP
            reply = client.post("/api/items", data={"id": f"web/{n}.png"},
                                files={"file": ("x.png", png_bytes((n, 200, n)), "image/png")})
            assert reply.status_code == 201, reply.text
            uploaded.append(reply.json()["id"])
        saving.join()
        (colour_folder / "green.png").unlink()
        watched = [f"camera/{n}.jpg" for n in range(8)]

        deadline = time.monotonic() + TIMEOUT_S
        while any(client.get(f"/api/items/{i}").status_code != 200 for i in watched) \
                or client.get("/api/items/green.png").status_code != 404:
            assert time.monotonic() < deadline, "the server never saw the watched changes"
            assert watcher.is_alive()
            time.sleep(0.1)
        for item_id in uploaded:
            assert client.get(f"/api/items/{item_id}").status_code == 200
        hits = client.post("/api/search/text", json={"query": "blue", "k": 50}).json()["hits"]
        assert {h["item_id"] for h in hits} >= set(watched) | set(uploaded)
        on_disk = set(Collection.open(index, encoder=fake_encoder)._row_of)
        assert on_disk == {"red.jpg", "sub/blue.webp", "nocaption.bmp", *watched, *uploaded}
        removed = client.delete(f"/api/items/{uploaded[0]}")  # the server still writes
        assert removed.status_code == 200
    finally:
        watcher.stop()
        watcher.join(TIMEOUT_S)
    assert not watcher.is_alive()


def test_serve_watch_command_follows_the_folder_and_stops_on_ctrl_c(tmp_path, colour_folder,
                                                                    fake_encoder):
    index = build_index(tmp_path, colour_folder, fake_encoder)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.cli.fake_cli", "serve", str(index), "--port", str(port),
         "--watch", str(colour_folder)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        write_image(colour_folder / "later.png", (1, 2, 250))
        deadline = time.monotonic() + TIMEOUT_S
        while _status(f"http://127.0.0.1:{port}/api/items/later.png") != 200:
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "the server never saw the new file"
            time.sleep(0.1)
        server.send_signal(signal.SIGINT)
        assert server.wait(TIMEOUT_S) == 0
    finally:
        server.kill()
    output = server.stdout.read()
    assert "watching" in output and "1 added" in output


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet
        return None
