"""Staged training of a tower's heads and, per stage, the top blocks of its backbones.

Each stage has its losses (InfoNCE, IConE instance loss, CUSA's CSA and USA), trainable
blocks, learning rates (AdamW, linear warm-up then cosine) and length. Frozen parts come
from cached features or activations (tower_parts.py), so a stage runs at the speed of what
it trains. Validation by Rsum on the val split at the configured intervals keeps the best
heads and fine-tuned blocks (never chosen by test). A checkpoint after every
`save_epoch_interval` epochs makes an interrupted run resume to the same result: each
epoch's shuffling and dropout are seeded from (seed, stage, epoch), not from a running RNG.
A non-finite loss stops the run with a clear error; the last good checkpoint stays.
Under torchrun each process embeds a slice of every global batch (distributed.py).
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from crossmodal.errors import BadInputError, CrossmodalError, NonFiniteError
from crossmodal.losses.infonce import InfoNCELoss
from crossmodal.losses.instance import InstanceLoss
from crossmodal.losses.soft_label import CSALoss, Temperature, USALoss, teacher_similarity
from crossmodal.models.towers.heads import embed_images, embed_texts
from crossmodal.storage import atomic_save_json, atomic_write
from crossmodal.train import distributed
from crossmodal.train.config import StageConfig, TrainConfig
from crossmodal.train.heads import FeatureSet, evaluate_features
from crossmodal.train.tower_parts import TowerParts, embed_side, frozen_sides


class TrainingDiverged(CrossmodalError):
    pass


@dataclass
class TeacherFeatures:
    image: np.ndarray  # rows aligned with the training images
    text: np.ndarray  # rows aligned with the training texts


class HeadTrainer:
    def __init__(self, config: TrainConfig, heads: nn.Module, train: FeatureSet,
                 val: FeatureSet, teacher: TeacherFeatures | None = None,
                 progress: bool = True, towers: TowerParts | None = None):
        self.config, self.heads, self.train, self.val = config, heads, train, val
        self.teacher, self.towers = teacher, towers
        self.rank = distributed.rank_and_size()[0]
        self.progress = progress and self.rank == 0
        self.sides = frozen_sides(train)
        self.val_sides = frozen_sides(val)
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)  # initial weights of the loss modules
        dim = heads.dim
        self.losses = nn.ModuleDict({
            # CUSA's contrastive setting: tau 0.05, learnable, clamped to [0.01, 0.1].
            "infonce": InfoNCELoss(tau=0.05, min_tau=0.01, max_tau=0.1),
            "instance": InstanceLoss(dim, len(train.image)),
            "csa": CSALoss(),
            "usa": USALoss(),
        })
        # USA aligns uni-modal similarities through extra heads of their own.
        self.uni = nn.ModuleDict({"image": nn.Linear(train.image.shape[-1], dim),
                                  "text": nn.Linear(train.text.shape[1], dim)})
        self.captions_of: list[list[int]] = [[] for _ in range(len(train.image))]
        for text, image in enumerate(train.text_image):
            self.captions_of[image].append(text)
        self.temperatures = [m for m in self.losses.modules() if isinstance(m, Temperature)]
        self.best = -1.0
        self.step = 0

    # --- one stage ----------------------------------------------------------------------
    def _parameters(self, stage: StageConfig) -> list[nn.Parameter]:
        params = list(self.heads.parameters()) + list(self.losses["infonce"].parameters())
        for name in ("instance", "csa"):
            if stage.losses.get(name):
                params += list(self.losses[name].parameters())
        if stage.losses.get("usa"):
            params += list(self.losses["usa"].parameters()) + list(self.uni.parameters())
        return params

    def _backbone_parameters(self, stage: StageConfig) -> list[nn.Parameter]:
        if self.towers is None:
            return []
        return [p for block in self.towers.modules(stage) for p in block.parameters()]

    def _optimizer(self, stage: StageConfig):
        groups = [{"params": self._parameters(stage)}]
        backbone = self._backbone_parameters(stage)
        if backbone:
            groups.append({"params": backbone, "lr": stage.backbone_lr or stage.lr})
        optimizer = torch.optim.AdamW(groups, lr=stage.lr, weight_decay=stage.wd)
        total = stage.max_epochs * self._steps_per_epoch(stage)

        def factor(step: int) -> float:
            if step < stage.warmup:
                return (step + 1) / max(1, stage.warmup)
            progress = (step - stage.warmup) / max(1, total - stage.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _steps_per_epoch(self, stage: StageConfig) -> int:
        return max(1, len(self.train.image) // stage.batch_size)

    def _loss(self, stage: StageConfig, images: np.ndarray, texts: np.ndarray,
              dropout: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        # This process embeds its slice of the global batch; the losses see all slices.
        mine = distributed.local_slice(images)
        gather = distributed.gather_with_grad
        views = self._random_views(len(images))  # drawn for the global batch, then sliced
        image_x = dropout(self.sides[0](images[mine], None if views is None else views[mine]))
        text_x = dropout(self.sides[1](texts[mine]))
        captions = self.train.captions(texts[mine], self.heads)
        img = gather(embed_images(self.heads, image_x))
        txt = gather(embed_texts(self.heads, text_x, captions))
        parts: dict[str, torch.Tensor] = {}
        weights = stage.losses
        if weights.get("infonce"):
            parts["infonce"] = self.losses["infonce"](img, txt)
        if weights.get("instance"):
            parts["instance"] = self.losses["instance"](img, txt, torch.from_numpy(images))
        if weights.get("csa") or weights.get("usa"):
            t_img = teacher_similarity(torch.from_numpy(self.teacher.image[images]))
            t_txt = teacher_similarity(torch.from_numpy(self.teacher.text[texts]))
            if weights.get("csa"):
                parts["csa"] = self.losses["csa"](img, txt, t_img, t_txt)
            if weights.get("usa"):
                parts["usa"] = self.losses["usa"](gather(self.uni["image"](image_x)),
                                                  gather(self.uni["text"](text_x)), t_img, t_txt)
        total = sum(weights[name] * value for name, value in parts.items())
        return total, {name: float(value.detach()) for name, value in parts.items()}

    def _random_views(self, n: int) -> np.ndarray | None:
        """With tta views, each training image shows one view at random (augmentation)."""
        views = self.train.image.shape[1] if self.train.image.ndim == 3 else 1
        return None if views == 1 else torch.randint(views, (n,)).numpy()

    def _run_epoch(self, s: int, stage: StageConfig, epoch: int, optimizer, schedule) -> dict:
        seed = self.config.seed * 1_000_003 + s * 1009 + epoch
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        dropout = nn.Dropout(self.config.input_dropout)
        self.heads.train()
        order = rng.permutation(len(self.train.image))
        sums: dict[str, float] = {}
        steps = self._steps_per_epoch(stage)
        started = time.perf_counter()
        for step in range(steps):
            images = order[step * stage.batch_size : (step + 1) * stage.batch_size]
            texts = np.array([rng.choice(self.captions_of[i]) for i in images])
            loss, parts = self._loss(stage, images, texts, dropout)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in stage '{stage.name}' epoch {epoch + 1} step "
                    f"{step + 1} (parts {parts}): lower lr or check the data; the last good "
                    f"checkpoint is {self.out / 'last.pt'}")
            optimizer.zero_grad()
            loss.backward()
            distributed.average_gradients(p for g in optimizer.param_groups for p in g["params"])
            optimizer.step()
            schedule.step()
            for temperature in self.temperatures:  # as CUSA's code: clamp stored tau in place
                temperature.clamp_()
            self.step += 1
            for name, value in {"loss": loss.item(), **parts}.items():
                sums[name] = sums.get(name, 0.0) + value
            if self.config.valid_step_interval and self.step % self.config.valid_step_interval == 0:
                self._validate(stage, epoch, {"step": self.step})
        means = {name: value / steps for name, value in sums.items()}
        means["pairs_per_s"] = steps * stage.batch_size / (time.perf_counter() - started)
        return means

    # --- validation, checkpoints, log ---------------------------------------------------
    def evaluate(self) -> dict:
        """Val metrics of the current heads and backbones (features computed in chunks)."""
        self.heads.eval()
        with torch.inference_mode():
            chunk = self.config.valid_batch_size
            image = embed_side(self.val_sides[0], len(self.val.image), chunk)
            text = embed_side(self.val_sides[1], len(self.val.text), chunk)
        return evaluate_features(self.heads, image, text, self.val)

    def _validate(self, stage: StageConfig, epoch: int, record: dict) -> float:
        if self.rank != 0:  # one process validates and writes
            return self.best
        try:
            report = self.evaluate()
        except NonFiniteError as exc:  # else NaN embeddings would score as a perfect model
            raise TrainingDiverged(
                f"validation in stage '{stage.name}' epoch {epoch + 1}: {exc}; lower lr or "
                f"check the data; the last good checkpoint is {self.out / 'last.pt'}") from None
        rsum = report["rsum"]
        if rsum > self.best:
            self.best = rsum
            self.heads.save(self.out / "best.safetensors")
            if self.towers is not None:
                self.towers.save(self.out / "best-backbones.safetensors")
            atomic_save_json(self.out / "best.json", {"stage": stage.name, "epoch": epoch + 1,
                                                     "step": self.step, "val": report})
        self._log({**record, "stage": stage.name, "epoch": epoch + 1, "val_rsum": rsum,
                   "best_rsum": self.best})
        return rsum

    def _log(self, record: dict) -> None:
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _save(self, s: int, epoch: int, optimizer, schedule) -> None:
        if self.rank != 0:
            return
        towers = self.towers
        state = {"stage": s, "epoch": epoch, "step": self.step, "best": self.best,
                 "backbones": towers.state() if towers else {},
                 "first_trained": towers.first_trained if towers else {},
                 "heads": self.heads.state_dict(), "losses": self.losses.state_dict(),
                 "uni": self.uni.state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.out / "last.pt", lambda handle: handle.write(buffer.getvalue()))

    # --- the whole run ------------------------------------------------------------------
    def fit(self, resume: bool = True) -> dict:
        size = distributed.rank_and_size()[1]
        for stage in self.config.stages:
            trains_blocks = any(stage.blocks_to_train(side, 1) for side in ("image", "text"))
            if self.towers is None and trains_blocks:
                raise BadInputError(f"stage '{stage.name}' trains backbone blocks, which needs "
                                    "the towers themselves (crossmodal train), not features")
            if self.towers is not None:
                self.towers.counts(stage)  # refuses blocks that cannot train, before any work
            if stage.batch_size % size:
                raise BadInputError(f"stage '{stage.name}': batch_size {stage.batch_size} must "
                                    f"divide evenly over {size} processes")
            if (stage.losses.get("csa") or stage.losses.get("usa")) and self.teacher is None:
                raise BadInputError(f"stage '{stage.name}' uses csa/usa but no teacher "
                                    "features were given")
        start_stage, start_epoch, saved = 0, 0, None
        checkpoint = self.out / "last.pt"
        if not (resume and checkpoint.is_file()) and self.rank == 0:  # fresh run, fresh files
            for stale in ("log.jsonl", "best-backbones.safetensors"):
                (self.out / stale).unlink(missing_ok=True)
        if resume and checkpoint.is_file():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
            self.heads.load_state_dict(saved["heads"])
            self.losses.load_state_dict(saved["losses"])
            self.uni.load_state_dict(saved["uni"])
            if self.towers is not None and saved.get("backbones"):
                self.towers.load_state(saved["backbones"], saved["first_trained"])
            self.step, self.best = saved["step"], saved["best"]
            start_stage, start_epoch = saved["stage"], saved["epoch"] + 1
        for s, stage in enumerate(self.config.stages):
            if s < start_stage:
                continue
            if self.towers is not None:
                self.towers.begin(stage)
                self.sides = self.towers.sides(stage, "train")
                self.val_sides = self.towers.sides(stage, "val")
            optimizer, schedule = self._optimizer(stage)
            first = start_epoch if s == start_stage else 0
            if saved is not None and s == start_stage and first < stage.max_epochs:
                optimizer.load_state_dict(saved["optimizer"])
                schedule.load_state_dict(saved["schedule"])
            for epoch in tqdm(range(first, stage.max_epochs), desc=f"stage {stage.name}",
                              disable=not self.progress):
                means = self._run_epoch(s, stage, epoch, optimizer, schedule)
                record = {"step": self.step, **{f"train_{k}": v for k, v in means.items()}}
                last = epoch + 1 == stage.max_epochs
                if last or (epoch + 1) % self.config.valid_epoch_interval == 0:
                    self._validate(stage, epoch, record)
                else:
                    self._log({**record, "stage": stage.name, "epoch": epoch + 1})
                if last or (epoch + 1) % self.config.save_epoch_interval == 0:
                    self._save(s, epoch, optimizer, schedule)
        distributed.barrier()
        if self.rank != 0:
            return {}
        return json.loads((self.out / "best.json").read_text(encoding="utf-8"))
