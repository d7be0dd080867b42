"""Synthetic features, a config and small heads for trainer tests (and the torchrun worker)."""

from __future__ import annotations

import numpy as np
import torch

from crossmodal.models.towers.heads import TowerHeads
from crossmodal.train.config import TrainConfig
from crossmodal.train.features import FeatureSet


def synthetic(n_images: int, seed: int) -> FeatureSet:
    """Text features are a fixed linear view of image features plus noise: learnable."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n_images, 12)).astype(np.float32)
    mix = np.random.default_rng(99).standard_normal((12, 10)).astype(np.float32)
    owners = np.repeat(np.arange(n_images), 2)
    text = image[owners] @ mix + 0.3 * rng.standard_normal((2 * n_images, 10)).astype(np.float32)
    return FeatureSet(image, text.astype(np.float32), owners)


def config(tmp_path, stages, **extra) -> TrainConfig:
    return TrainConfig.from_dict({"model": "towers:lite-en", "train_data": "x", "val_data": "x",
                                  "output_dir": str(tmp_path), "stages": stages, **extra})


def heads() -> TowerHeads:
    torch.manual_seed(0)
    return TowerHeads(12, 10, {"dim": 8})


STAGES = [
    {"name": "one", "losses": {"infonce": 1.0, "instance": 1.0}, "max_epochs": 3,
     "batch_size": 16, "warmup": 2, "lr": 0.01},
    {"name": "two", "losses": {"infonce": 1.0}, "max_epochs": 3, "batch_size": 16,
     "warmup": 0, "lr": 0.003},
]
