"""Run by tests/train/test_distributed.py under torchrun: train heads on synthetic features in
a process group and save what rank 0 learned."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from crossmodal.train import distributed
from crossmodal.train.trainer import StageTrainer
from tests.trainer_helpers import STAGES, config, heads, synthetic


def main(out: str, broken_val: bool = False) -> None:
    assert distributed.init_from_env(), "expected torchrun's environment"
    model = heads()
    cfg = config(Path(out), STAGES, input_dropout=0.0)
    val = synthetic(16, 4)
    if broken_val:  # only rank 0 validates: every rank must still stop
        val.image[:] = float("nan")
    StageTrainer(cfg, model, synthetic(64, 3), val, progress=False).fit()
    rank, size = distributed.rank_and_size()
    torch.save(model.state_dict(), Path(out) / f"heads-rank{rank}-of{size}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], broken_val=sys.argv[2:] == ["--nan-val"])
