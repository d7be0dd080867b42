"""`crossmodal index DIR --into IDX --watch` as a process of its own, killed with -9 at a
random moment of a burst of changes: the index opens whole, nothing it printed as applied is
lost, and a restart catches up with what changed while it was down.

The burst only ever adds new names, deletes files of the starting set and renames them to
new names, each name once: so what a printed batch says about an id is final, and must be
what the index holds, whatever commit was in flight when the process died.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from tests.fakes import FakeEncoder
from tests.image_helpers import write_image
from tests.paths import REPO

TIMEOUT_S = 30.0


class WatchProcess:
    """`crossmodal index ... --watch --verbose` in a subprocess, its stdout read as it comes."""

    def __init__(self, folder: Path, index: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cli.fake_cli", "index", str(folder), "--into",
             str(index), "--model", "fake:colours", "--watch", "--verbose", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, condition, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {what}: {self.lines} "
                                     f"{self.proc.stderr.read()[-2000:]}")
            time.sleep(0.02)

    def applied(self) -> int:
        return sum("applied:" in line for line in self.lines)

    def wait_for_line(self, marker: str) -> None:
        self.wait_for(lambda: any(marker in line for line in self.lines), f"'{marker}' line")

    def kill_9(self) -> list[str]:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(TIMEOUT_S)
        self._reader.join(TIMEOUT_S)
        assert self.proc.returncode == -signal.SIGKILL
        return self.lines


def acknowledged(lines: list[str]) -> dict[str, bool]:
    """What the printed batches said last about each id: indexed (True) or removed."""
    state: dict[str, bool] = {}
    for line in lines:
        if line.startswith(("  + ", "  ~ ")):
            state[line[4:]] = True
        elif line.startswith("  - "):
            state[line[4:]] = False
        elif line.startswith("  > "):
            old, new = line[4:].split(" -> ")
            state[old], state[new] = False, True
    return state


def image_ids(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)}


class Burst:
    """Changes the way people's tools make them, each name touched once, until stopped."""

    def __init__(self, folder: Path, rng: random.Random, round_: int):
        self.folder, self.rng, self.round = folder, rng, round_
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        starting = sorted(image_ids(self.folder))
        self.rng.shuffle(starting)
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"r{self.round}/{n:03d}.png" if n % 3 else f"r{self.round}-{n:03d}.png"
            action = self.rng.random()
            (self.folder / name).parent.mkdir(exist_ok=True)
            colour = (n * 37 % 256, self.round * 60, n * 11 % 256)
            if action < 0.4 or not starting:
                write_image(self.folder / name, colour)  # saved in place
            elif action < 0.6:  # written beside, renamed into place (editors, rsync)
                temp = self.folder / f".{n}.tmp"
                write_image(temp, colour, fmt="PNG")
                os.replace(temp, self.folder / name)
            elif action < 0.8:
                (self.folder / starting.pop()).unlink()
            else:
                os.rename(self.folder / starting.pop(), self.folder / name)
            time.sleep(self.rng.choice((0.0, 0.05, 0.7, 0.9)))  # some pauses end a batch


def test_kill_9_during_a_burst_loses_nothing_acknowledged_and_a_restart_catches_up(tmp_path):
    folder, index = tmp_path / "photos", tmp_path / "index"
    for n in range(12):
        write_image(folder / f"start-{n:02d}.png", (n * 20, 100, 50))
    rng = random.Random(7)
    present_all: set[str] = set()
    watcher = WatchProcess(folder, index)
    for round_ in range(3):
        watcher.wait_for_line("caught up")
        # Caught up: whatever changed while it was down (the previous burst went on after
        # the kill) is in, and nothing else.
        assert set(Collection.open(index, encoder=FakeEncoder())._row_of) == image_ids(folder)
        burst = Burst(folder, rng, round_)
        applied_before = watcher.applied()
        burst.thread.start()
        # At a random moment after the burst's first batch was applied (so something was
        # acknowledged), most likely while another is embedded or committed.
        watcher.wait_for(lambda w=watcher, n=applied_before: w.applied() > n,
                         "a batch of the burst")
        time.sleep(rng.uniform(0.0, 2.0))
        lines = watcher.kill_9()
        said = acknowledged(lines)
        collection = Collection.open(index, encoder=FakeEncoder())  # opens whole
        assert collection.manifest.verify(index) == []
        assert len(collection.items) == len(collection.images.vectors)
        held = set(collection._row_of)
        # Names the burst made are never touched again, and removed names never come back:
        # no commit in flight at the kill can have changed what was printed about them.
        made = {i for i, there in said.items() if there and i.startswith(f"r{round_}")}
        gone = {i for i, there in said.items() if not there}
        assert made <= held, f"acknowledged, then lost: {sorted(made - held)}"
        assert not (gone & held), f"acknowledged as removed, still there: {gone & held}"
        present_all |= made
        time.sleep(0.3)  # the burst goes on a little while nothing watches
        burst.stop.set()
        burst.thread.join(TIMEOUT_S)
        watcher = WatchProcess(folder, index)
    watcher.wait_for_line("caught up")
    assert set(Collection.open(index, encoder=FakeEncoder())._row_of) == image_ids(folder)
    assert len(present_all) >= 3, "no batch was acknowledged: the test proved nothing"
    watcher.proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
    assert watcher.proc.wait(TIMEOUT_S) == 0
    assert "stopped watching" in watcher.proc.stderr.read()


def test_watch_refuses_what_it_cannot_follow_in_one_line(tmp_path, colour_folder,
                                                          fake_encoder):
    runner = CliRunner()
    index = str(tmp_path / "index")
    for args, expected in [
        ([str(colour_folder), str(tmp_path)], "exactly one DIR"),
        ([str(colour_folder / "red.jpg")], "needs a folder"),
        ([str(colour_folder), "--ray", "local"], "--ray"),
    ]:
        result = runner.invoke(cli, ["index", *args, "--into", index, "--model",
                                     "fake:colours", "--watch"])
        assert result.exit_code == 2, result.output
        assert expected in result.output and len(result.output.splitlines()) == 1
    assert not Path(index).exists()
    result = runner.invoke(cli, ["serve", index, "--watch", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "needs a folder" in result.output
