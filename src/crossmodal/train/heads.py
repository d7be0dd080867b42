"""Train a tower's projection heads on cached (frozen) backbone features with InfoNCE.

Each step takes a batch of images and one random caption of each, so every batch is
paired 1:1 and no caption of the same image sits among the negatives. The best epoch by
validation Rsum is kept.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from crossmodal.losses.infonce import InfoNCELoss
from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.models.preprocess import l2_normalize
from crossmodal.models.towers.heads import TowerHeads


@dataclass
class HeadTrainingConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    tau: float = 0.05
    input_dropout: float = 0.1
    seed: int = 0


@dataclass
class FeatureSet:
    image: np.ndarray  # (n_images, d_img)
    text: np.ndarray  # (n_texts, d_txt)
    text_image: np.ndarray  # (n_texts,) image row of each text


def evaluate_heads(heads: TowerHeads, data: FeatureSet) -> dict:
    heads.eval()
    with torch.inference_mode():
        image = l2_normalize(heads.image(torch.from_numpy(data.image)))
        text = l2_normalize(heads.text(torch.from_numpy(data.text)))
    return evaluate_pairs(image, text, data.text_image)


def train_heads(heads: TowerHeads, train: FeatureSet, val: FeatureSet,
                config: HeadTrainingConfig | None = None,
                log_path: Path | None = None, progress: bool = True) -> tuple[TowerHeads, dict]:
    config = config or HeadTrainingConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    loss_fn = InfoNCELoss(tau=config.tau, learnable=True)
    params = list(heads.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train.image) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    captions_of = [[] for _ in range(len(train.image))]
    for text, image in enumerate(train.text_image):
        captions_of[image].append(text)
    image_x, text_x = torch.from_numpy(train.image), torch.from_numpy(train.text)
    dropout = torch.nn.Dropout(config.input_dropout)
    best, best_state, history = -1.0, None, []
    log = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        for epoch in tqdm(range(config.epochs), desc="training heads", disable=not progress):
            heads.train()
            order = rng.permutation(len(train.image))
            losses = []
            for step in range(steps_per_epoch):
                images = order[step * config.batch_size : (step + 1) * config.batch_size]
                texts = np.array([rng.choice(captions_of[i]) for i in images])
                img = heads.image(dropout(image_x[images]))
                txt = heads.text(dropout(text_x[texts]))
                loss = loss_fn(img, txt)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
            report = evaluate_heads(heads, val)
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                      "val_rsum": report["rsum"], "tau": float(1.0 / loss_fn.scale.item())}
            history.append(record)
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if report["rsum"] > best:
                best, best_state = report["rsum"], copy.deepcopy(heads.state_dict())
                best_state["logit_scale"] = loss_fn.log_scale.detach().clone()
    finally:
        if log:
            log.close()
    heads.load_state_dict(best_state)
    final = evaluate_heads(heads, val)
    return heads, {"val": final, "history": history, "config": asdict(config)}
