"""Ray embedding on a local 2-CPU cluster: layout, a killed worker, resume, `index --ray`.

One cluster serves the module. Its workers register a logging fake model
(tests/ray_worker_setup.py), so the tests count how often each image was encoded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from tests.image_helpers import write_image
from tests.paths import REPO

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

from crossmodal.distributed.clip_layout import list_shards, read_shard, shard_files  # noqa: E402
from crossmodal.distributed.inputs import plan_shards  # noqa: E402
from crossmodal.distributed.ray_embed import embed_plan  # noqa: E402

MAGENTA = (255, 0, 255)


@pytest.fixture(scope="module")
def worker_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-workers")
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
        runtime_env={
            "env_vars": {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "CROSSMODAL_TEST_DIR": str(folder),
                         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            "worker_process_setup_hook": "tests.ray_worker_setup.register_fake",
        },
    )
    yield folder
    ray.shutdown()


@pytest.fixture
def encode_log(worker_dir):
    log = worker_dir / "encode.log"
    log.write_text("")

    def counts() -> Counter:
        return Counter(tuple(map(int, line.split(","))) for line in log.read_text().split())

    return counts


def _photos(root: Path, colours: list[tuple[int, int, int]]) -> Path:
    for n, colour in enumerate(colours):
        write_image(root / f"{n:02d}.png", colour, size=(8, 8), fmt="PNG")
        (root / f"{n:02d}.txt").write_text(f"photo number {n}\n", encoding="utf-8")
    return root


def _colours(n: int, base: int) -> list[tuple[int, int, int]]:
    return [(base + 7 * i, 40, 90) for i in range(n)]


def test_embed_writes_layout_with_each_image_encoded_once(tmp_path, fake_encoder, encode_log):
    colours = _colours(8, 10)
    photos = _photos(tmp_path / "photos", colours)
    out = tmp_path / "emb"
    result = CliRunner().invoke(cli, ["embed", str(photos), "--out", str(out), "--model",
                                      "fake:colours", "--shard-size", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 shards embedded (8 image-caption rows) and 0 already done, of 3" in result.output
    assert list_shards(out) == ["0", "1", "2"]
    assert encode_log() == Counter({c: 1 for c in colours})
    metadata = read_shard(out, "1").metadata
    assert [(m["item_id"], m["caption"]) for m in metadata] == [
        ("03.png", "photo number 3"), ("04.png", "photo number 4"), ("05.png", "photo number 5")]
    result = CliRunner().invoke(cli, ["import-embeddings", str(out), "--into",
                                      str(tmp_path / "idx"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(Collection.open(tmp_path / "idx")) == 8


def test_killed_worker_is_replaced_and_only_its_shard_is_redone(tmp_path, fake_encoder,
                                                                 worker_dir, encode_log):
    colours = _colours(9, 100)
    colours[4] = MAGENTA  # shard 1 (items 3-5): its worker is SIGKILLed mid-shard
    photos = _photos(tmp_path / "photos", colours)
    (worker_dir / "kill-armed").write_text("")
    report = embed_plan(plan_shards([photos], shard_size=3), tmp_path / "emb", "fake:colours",
                        progress=False)
    assert (worker_dir / "kill-fired").exists()
    (worker_dir / "kill-fired").unlink()
    assert (report.shards, report.rows) == (3, 9)
    assert all(shard_files(tmp_path / "emb", i, 3).done() for i in range(3))
    counts = encode_log()
    assert counts[MAGENTA] == 2  # the killed attempt, then the retry
    assert all(counts[c] == 1 for i, c in enumerate(colours) if i not in (3, 4, 5))
    vectors = np.concatenate([read_shard(tmp_path / "emb", t).image_vectors for t in "012"])
    assert len(vectors) == 9 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)


def test_rerun_after_driver_failure_embeds_only_missing_shards(tmp_path, fake_encoder,
                                                               encode_log):
    from crossmodal.distributed.ray_embed import prepare_output
    from crossmodal.distributed.shard_embed import embed_and_write

    colours = _colours(9, 40)
    photos = _photos(tmp_path / "photos", colours)
    out = tmp_path / "emb"
    plan = plan_shards([photos], shard_size=3)
    prepare_output(out, "fake:colours", plan)
    for spec in plan.shards[:2]:  # the first run's driver died while shard 2 was written
        embed_and_write(spec, 3, str(out), fake_encoder)
    (out / "img_emb").mkdir(exist_ok=True)
    (out / "img_emb" / ".img_emb_2.npy.x.tmp").write_bytes(b"half written")
    report = embed_plan(plan_shards([photos], shard_size=3), out, "fake:colours",
                        progress=False)
    assert (report.already_done, report.computed) == (2, 1)
    assert encode_log() == Counter({c: 1 for c in colours[6:]})
    assert not (out / "img_emb" / ".img_emb_2.npy.x.tmp").exists()
    assert [len(read_shard(out, tag).metadata) for tag in list_shards(out)] == [3, 3, 3]


def test_index_with_ray_adds_only_new_items(tmp_path, fake_encoder, encode_log):
    colours = _colours(5, 150)
    photos = _photos(tmp_path / "photos", colours)
    into = tmp_path / "idx"
    args = ["index", str(photos), "--into", str(into), "--model", "fake:colours",
            "--ray", "local", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "imported 5 items (5 captions)" in result.output
    assert not (into / ".ray-work").exists()
    write_image(photos / "new.png", (250, 10, 10), size=(8, 8), fmt="PNG")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "imported 1 items" in result.output
    collection = Collection.open(into)
    assert len(collection) == 6 and collection.search_text("red", k=1)[0].id == "new.png"
    assert sum(encode_log().values()) == 6


def _kill_processes_with_env(marker: str) -> None:
    """Ray workers run in sessions of their own; find ours by an environment variable."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray workers through /proc")
def test_killed_driver_then_rerun_embeds_only_unfinished_shards(tmp_path, fake_encoder,
                                                               encode_log):
    colours = _colours(8, 200)
    photos = _photos(tmp_path / "photos", colours)
    out = tmp_path / "emb"
    (tmp_path / "encode.log").write_text("")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}",
           "CROSSMODAL_TEST_DIR": str(tmp_path), "CROSSMODAL_TEST_ENCODE_SLEEP": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "tests.ray_worker_setup", str(photos),
                               str(out)], cwd=REPO, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not shard_files(out, 0, 4).done() and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the cluster it started
        driver.wait()
        _kill_processes_with_env(f"CROSSMODAL_TEST_DIR={tmp_path}")  # its workers too
    finished = [i for i in range(4) if shard_files(out, i, 4).done()]
    assert 0 in finished and len(finished) < 4
    report = embed_plan(plan_shards([photos], shard_size=2), out, "fake:colours",
                        progress=False)
    assert (report.already_done, report.computed) == (len(finished), 4 - len(finished))
    redone = encode_log()
    assert not any(colours[2 * i] in redone or colours[2 * i + 1] in redone for i in finished)
    assert all(shard_files(out, i, 4).done() for i in range(4))
