"""Bad images get a 4xx saying what is wrong; a writer lock held elsewhere stops no search;
aspect-ratio bombs and parallel decodes stay within a memory bound."""

from __future__ import annotations

import fcntl
import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from crossmodal.serve.budget import MemoryBudget  # noqa: E402
from tests.bad_files import PreprocessingEncoder, bad_dds, corrupt_gif, grey_png  # noqa: E402
from tests.fakes import as_fake_backend  # noqa: E402
from tests.paths import REPO  # noqa: E402
from tests.serve.test_serve_decode_memory import STATUS, reset_peak, rss_and_peak  # noqa: E402
from tests.serve_helpers import (  # noqa: E402
    big_rgba_png,
    build_index,
    local_client,
    png_bytes,
    serving,
)

BAD_IMAGES = {
    "corrupt.gif": (corrupt_gif(), "IndexError"),
    "texture.png": (bad_dds(), "NotImplementedError"),
    "wide.png": (grey_png(39_000_000, 1), "aspect ratio"),
    "bomb.png": (grey_png(20_000, 2), "aspect ratio"),
}


@pytest.fixture
def encoder(monkeypatch) -> PreprocessingEncoder:
    encoder = PreprocessingEncoder()
    yield from as_fake_backend(monkeypatch, encoder)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_images_get_a_4xx_that_says_why(tmp_path, colour_folder, encoder, name):
    app = create_app(build_index(tmp_path, colour_folder, encoder),
                     ServeSettings(rate_per_second=0), encoder=encoder)
    client = local_client(app, raise_server_exceptions=False)  # a crash shows as a 500
    data, reason = BAD_IMAGES[name]
    for route in ("/api/items", "/api/search/image"):
        response = client.post(route, files={"file": (name, data, "image/png")})
        assert response.status_code == 400, (route, response.text)
        assert reason in response.json()["detail"]
    assert client.get("/api/stats").json()["items"] == 4  # nothing was added


def test_health_and_searches_answer_while_another_process_holds_the_writer_lock(
        tmp_path, colour_folder, fake_encoder):
    import httpx

    index = build_index(tmp_path, colour_folder, fake_encoder)
    app = create_app(index, ServeSettings(rate_per_second=0), encoder=fake_encoder)
    statuses: list[int] = []
    with serving(app) as url, open(index / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as `crossmodal index` does while it commits

        def upload(n: int) -> None:
            files = {"file": (f"{n}.png", png_bytes((n, 100, 100)), "image/png")}
            statuses.append(httpx.post(f"{url}/api/items", files=files, timeout=120)
                            .status_code)

        # More uploads than the server has worker threads (40): all wait for the lock.
        uploads = [threading.Thread(target=upload, args=(n,), daemon=True) for n in range(45)]
        for thread in uploads:
            thread.start()
        time.sleep(2)  # the uploads reach the lock
        started = time.monotonic()
        assert httpx.get(f"{url}/api/health", timeout=10).status_code == 200
        search = httpx.post(f"{url}/api/search/text", json={"query": "red"}, timeout=10)
        assert search.status_code == 200 and search.json()["hits"][0]["id"] == "red.jpg"
        assert time.monotonic() - started < 10
        assert not statuses  # the uploads did wait for the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
        for thread in uploads:
            thread.join(60)
    assert statuses == [201] * 45


@pytest.mark.skipif(not STATUS.exists(), reason="needs Linux /proc to measure memory")
def test_aspect_ratio_bombs_add_no_memory(tmp_path, colour_folder, encoder):
    client = local_client(create_app(build_index(tmp_path, colour_folder, encoder),
                                     ServeSettings(rate_per_second=0), encoder=encoder))
    statuses: list[int] = []

    def search(data: bytes) -> None:
        files = {"file": ("bomb.png", data, "image/png")}
        statuses.append(client.post("/api/search/image", files=files).status_code)

    search(png_bytes((10, 10, 10)))  # warm: the app's and the encoder's own memory is in
    gc.collect()
    if not reset_peak():
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
    before, _ = rss_and_peak()
    search(grey_png(20_000, 2))  # 196 bytes; resized whole for the model: 2 GB
    threads = [threading.Thread(target=search, args=(grey_png(10_000, 2),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    search(grey_png(2000, 40))  # the widest allowed: its preprocessing is bounded too
    _, peak = rss_and_peak()
    print(f"peak growth {(peak - before) / 1e6:.0f} MB")
    assert statuses == [200, 400, 400, 400, 400, 400, 200]
    assert peak - before < 100e6  # was 2.0 GB for one, 3.8 GB for the four


def test_memory_budget_admits_what_fits_in_arrival_order():
    budget = MemoryBudget(100)
    order: list[str] = []
    with budget.reserve(60):
        def take(name: str, nbytes: int) -> None:
            with budget.reserve(nbytes):
                order.append(name)
                time.sleep(0.05)

        big = threading.Thread(target=take, args=("big", 90))
        big.start()
        time.sleep(0.05)
        small = threading.Thread(target=take, args=("small", 10))  # fits, but comes later
        small.start()
        time.sleep(0.05)
        assert order == [] and budget.used == 60
    big.join(5)
    small.join(5)
    assert order == ["big", "small"] and budget.used == 0
    with budget.reserve(10**9):  # bigger than the whole budget: runs, alone
        assert budget.used == 100


def parallel_decode_growth(folder: Path) -> tuple[float | None, list[int]]:
    """Peak RSS growth, in decoded frames, while 4 uploads of a 16 MP RGBA PNG decode at once
    under a budget that fits one (None: the peak cannot be reset here), and the statuses."""
    from tests.fakes import FakeEncoder
    from tests.image_helpers import write_image

    side = 4000  # 16 MP RGBA: 64 MB decoded, 80 MB reserved
    frame = side * side * 4
    for name, rgb in (("red.jpg", (250, 10, 10)), ("green.png", (10, 250, 10))):
        write_image(folder / "photos" / name, rgb)
    settings = ServeSettings(max_parallel_decodes=8, max_decode_bytes=100_000_000,
                             rate_per_second=0)
    encoder = FakeEncoder()
    client = local_client(create_app(build_index(folder, folder / "photos", encoder),
                                     settings, encoder=encoder))
    data = big_rgba_png(side)
    statuses: list[int] = []

    def search() -> None:
        files = {"file": ("big.png", data, "image/png")}
        statuses.append(client.post("/api/search/image", files=files).status_code)

    search()  # warm
    gc.collect()
    if not reset_peak():
        return None, statuses
    before, _ = rss_and_peak()
    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    _, peak = rss_and_peak()
    return (peak - before) / frame, statuses


@pytest.mark.skipif(not STATUS.exists(), reason="needs Linux /proc to measure memory")
def test_parallel_decodes_stay_within_the_memory_budget(tmp_path):
    # In a fresh process: the peak RSS is the whole process's, and threads and allocator
    # arenas that earlier tests leave behind in this one would be counted too.
    script = ("import json, sys; from pathlib import Path; "
              "from tests.serve.test_serve_bad_files import parallel_decode_growth; "
              "print(json.dumps(parallel_decode_growth(Path(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    grown, statuses = json.loads(done.stdout.strip().splitlines()[-1])
    if grown is None:
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
    print(f"peak growth {grown:.2f}x one frame")
    assert statuses == [200] * 5
    # The budget fits one decode (1.25 frames); the count (8) would have let all 4 run.
    assert grown < 2.2
