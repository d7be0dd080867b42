"""Two servers on one index share stored upload files (same bytes, one content-hash name):
removing one item must never delete the file another server's item has just been given.

Each round: server 1 holds `a/k` and removes it while server 2 uploads the same image bytes as
`b/k`. A small random delay before each wait for the folder's lock (a scheduler's, injected)
makes every interleaving likely. Whatever the order, `b/k` is acknowledged and its stored
image must be
on disk, in both servers' view and after a fresh open.
"""

from __future__ import annotations

import fcntl
import random
import threading
import time
from pathlib import Path

import pytest

from crossmodal.engine import Collection
from crossmodal.serve.live import LiveCollection, Upload
from tests.serve_helpers import build_index, png_bytes


def _delay_locking(rng: random.Random, monkeypatch) -> None:
    """Every wait for the folder's writer lock starts after a random pause of up to 3 ms: the
    window between a check made outside the lock and the lock itself, widened."""
    real_flock = fcntl.flock

    def late_flock(fd, operation):
        if operation & fcntl.LOCK_EX:
            time.sleep(rng.random() * 0.003)
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", late_flock)


def race(tmp_path: Path, colour_folder: Path, encoder, monkeypatch, rounds: int) -> list[str]:
    path = build_index(tmp_path, colour_folder, encoder)
    one = LiveCollection(path, encoder, refresh_s=3600)
    two = LiveCollection(path, encoder, refresh_s=3600)
    _delay_locking(random.Random(7), monkeypatch)
    lost: list[str] = []
    for n in range(rounds):
        data = png_bytes((n % 256, (n * 7) % 256, 99))
        old, new = f"a/{n}.png", f"b/{n}.png"
        one.add_upload(Upload.decode(data, 10_000), ["shared"], old)
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def run(action, errors=errors, start=start) -> None:
            try:
                start.wait()
                action()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(lambda old=old: one.remove(old),)),
            threading.Thread(target=run, args=(
                lambda new=new, data=data: two.add_upload(Upload.decode(data, 10_000),
                                                          ["shared"], new),)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors[0]
        stored = Path(two.item(new)["path"])
        if not stored.is_file():
            lost.append(new)
    fresh = Collection.open(path, encoder=encoder)
    for n in range(rounds):
        assert f"a/{n}.png" not in fresh and f"b/{n}.png" in fresh
        if not Path(fresh.item(f"b/{n}.png")["path"]).is_file() and f"b/{n}.png" not in lost:
            lost.append(f"b/{n}.png")
    return lost


def test_removing_a_shared_upload_keeps_the_file_another_server_just_used(
        tmp_path, colour_folder, fake_encoder, monkeypatch):
    assert race(tmp_path, colour_folder, fake_encoder, monkeypatch, rounds=25) == []


@pytest.mark.slow
def test_shared_upload_race_200_rounds(tmp_path, colour_folder, fake_encoder, monkeypatch):
    assert race(tmp_path, colour_folder, fake_encoder, monkeypatch, rounds=200) == []
