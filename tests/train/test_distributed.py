"""Two CPU processes under torchrun (gloo) learn exactly what one process learns from the
same global batches: the contrastive losses see every process's slice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crossmodal.train.trainer import StageTrainer
from tests.paths import REPO
from tests.trainer_helpers import STAGES, config, heads, synthetic


def two_processes(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(REPO / "tests" / "distributed_worker.py"), str(out), *args],
        env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_match_one(tmp_path):
    out = tmp_path / "two"
    done = two_processes(out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    two = [torch.load(out / f"heads-rank{rank}-of2.pt") for rank in (0, 1)]

    one = heads()
    StageTrainer(config(tmp_path / "one", STAGES, input_dropout=0.0), one, synthetic(64, 3),
                synthetic(16, 4), progress=False).fit()
    for name, value in one.state_dict().items():
        torch.testing.assert_close(two[0][name], two[1][name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(two[0][name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert (out / "best.safetensors").is_file()  # rank 0 validated and saved


def test_broken_validation_stops_every_process_not_only_rank_0(tmp_path):
    # rank 0 alone validates; before, rank 1 waited in the next all-reduce (gloo: 30 min)
    done = two_processes(tmp_path / "nan", "--nan-val", timeout=240)
    assert done.returncode != 0
    log = done.stdout + done.stderr
    assert log.count("found non-finite embeddings") >= 1  # rank 1's own message
    assert "validation in stage 'one' epoch 1: 16 of 16 image rows" in log  # rank 0's


def test_batch_must_split_evenly_over_processes(tmp_path, monkeypatch):
    from crossmodal.errors import BadInputError
    from crossmodal.train import distributed

    monkeypatch.setattr(distributed, "rank_and_size", lambda: (0, 3))
    trainer = StageTrainer(config(tmp_path, STAGES), heads(), synthetic(32, 1), synthetic(8, 2),
                          progress=False)
    with pytest.raises(BadInputError, match="divide evenly over 3 processes"):
        trainer.fit()
