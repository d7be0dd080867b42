"""Run by tests/test_distributed.py under torchrun: train heads on synthetic features in
a process group and save what rank 0 learned."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from crossmodal.train import distributed
from crossmodal.train.trainer import StageTrainer
from tests.trainer_helpers import STAGES, config, heads, synthetic


def main(out: str) -> None:
    assert distributed.init_from_env(), "expected torchrun's environment"
    model = heads()
    cfg = config(Path(out), STAGES, input_dropout=0.0)
    StageTrainer(cfg, model, synthetic(64, 3), synthetic(16, 4), progress=False).fit()
    rank, size = distributed.rank_and_size()
    torch.save(model.state_dict(), Path(out) / f"heads-rank{rank}-of{size}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
