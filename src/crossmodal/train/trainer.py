"""Staged training of a tower's heads and, per stage, the top blocks of its backbones.

Each stage has its losses (InfoNCE, IConE instance loss, CUSA's CSA and USA), trainable
blocks, learning rates (AdamW, linear warm-up then cosine) and length. Frozen parts come
from cached features or activations (tower_parts.py), so a stage runs at the speed of what
it trains. Validation on the val split at the configured intervals, by the image-text
evaluator and the config's `select_metric` (Rsum unless set), keeps the best heads and
fine-tuned blocks (never chosen by test). A checkpoint after every
`save_epoch_interval` epochs makes an interrupted run resume to the same result: each
epoch's shuffling and dropout are seeded from (seed, stage, epoch), not from a running RNG.
A non-finite loss stops the run with a clear error; the last good checkpoint stays.
Under torchrun each process embeds a slice of every global batch (distributed.py).
Where CUDA is present and no backbone block trains, the heads and losses train on the GPU
in mixed precision (bf16 autocast where the GPU has it, else fp16 with a gradient scaler);
checkpoints and the best heads are written from the same weights, and the heads are back
on the CPU when `fit` returns.
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
from crossmodal.evaluation.evaluators import Evaluation
from crossmodal.losses.registry import LOSSES, LossInputs, build_loss
from crossmodal.losses.soft_label import teacher_similarity
from crossmodal.losses.temperature import Temperature
from crossmodal.models.towers.heads import embed_images, embed_texts
from crossmodal.storage import atomic_save_json, atomic_write
from crossmodal.train import distributed
from crossmodal.train.config import StageConfig, TrainConfig
from crossmodal.train.features import FeatureSet
from crossmodal.train.heads import evaluate_features
from crossmodal.train.tower_parts import TowerParts, embed_side, frozen_sides


class TrainingDiverged(CrossmodalError):
    pass


def heads_device(towers: TowerParts | None) -> torch.device:
    """The GPU where there is one and only cached features feed the heads (backbone blocks
    run on the CPU, on cached activations); else the CPU."""
    if towers is None and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class MixedPrecision:
    """Autocast and a gradient scaler for the GPU (bf16 needs no scaler); nothing on CPU."""

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda"
        bf16 = self.enabled and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and not bf16)

    def autocast(self):
        return torch.autocast("cuda", dtype=self.dtype, enabled=self.enabled)

    def step(self, loss: torch.Tensor, optimizer, params_ready) -> None:
        """backward, gradient averaging (params_ready), optimizer step."""
        self.scaler.scale(loss).backward()
        params_ready()
        self.scaler.step(optimizer)
        self.scaler.update()


@dataclass
class TeacherFeatures:
    image: np.ndarray  # rows aligned with the training images
    text: np.ndarray  # rows aligned with the training texts


class StageTrainer:
    """The stages of a run over cached features: the heads, the losses' own parameters and,
    with `towers`, the top backbone blocks that a stage trains."""

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
        # Every registered loss, in the registry's order (their initial weights draw from
        # the seeded RNG in that order), whether or not a stage uses it.
        self.losses = nn.ModuleDict({
            name: build_loss(name, config.loss_params.get(name), dim=dim,
                             num_instances=len(train.image))
            for name in LOSSES})
        # USA aligns uni-modal similarities through extra heads of their own.
        self.uni = nn.ModuleDict({"image": nn.Linear(train.image.shape[-1], dim),
                                  "text": nn.Linear(train.text.shape[1], dim)})
        self.captions_of: list[list[int]] = [[] for _ in range(len(train.image))]
        for text, image in enumerate(train.text_image):
            self.captions_of[image].append(text)
        self.temperatures = [m for m in self.losses.modules() if isinstance(m, Temperature)]
        self.device = heads_device(towers)
        for module in (self.heads, self.losses, self.uni):
            module.to(self.device)
        self.precision = MixedPrecision(self.device)
        self.best = -1.0
        self.step = 0

    # --- one stage ----------------------------------------------------------------------
    def _parameters(self, stage: StageConfig) -> list[nn.Parameter]:
        """The heads' parameters and those of the losses this stage weighs (with USA's
        uni-modal heads)."""
        params = list(self.heads.parameters())
        for name, spec in LOSSES.items():
            if stage.losses.get(name):
                params += list(self.losses[name].parameters())
                if spec.uses_uni_heads:
                    params += list(self.uni.parameters())
        return params

    def _backbone_parameters(self, stage: StageConfig) -> list[nn.Parameter]:
        if self.towers is None:
            return []
        return [p for block in self.towers.modules(stage) for p in block.parameters()]

    def _optimizer(self, stage: StageConfig):
        # No weight decay on 1-D (and 0-D) parameters: biases, norms, temperatures, logit
        # scales (as open_clip's `exclude`); decay pulls them to 0, which means nothing there.
        groups = []
        for params, lr in ((self._parameters(stage), stage.lr),
                           (self._backbone_parameters(stage), stage.backbone_lr or stage.lr)):
            decay = [p for p in params if p.ndim >= 2]
            plain = [p for p in params if p.ndim < 2]
            groups += [{"params": group, "lr": lr, "weight_decay": wd}
                       for group, wd in ((decay, stage.wd), (plain, 0.0)) if group]
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
        device = self.device
        image_x = dropout(self.sides[0](images[mine], None if views is None else views[mine])
                          .to(device))
        text_x = dropout(self.sides[1](texts[mine]).to(device))
        captions = self.train.captions(texts[mine], self.heads)
        used = {name: LOSSES[name] for name in LOSSES if stage.losses.get(name)}
        batch = LossInputs(gather(embed_images(self.heads, image_x)),
                           gather(embed_texts(self.heads, text_x, captions)),
                           torch.from_numpy(images).to(device))
        if any(spec.needs_teacher for spec in used.values()):
            batch.teacher_image = teacher_similarity(
                torch.from_numpy(self.teacher.image[images]).to(device))
            batch.teacher_text = teacher_similarity(
                torch.from_numpy(self.teacher.text[texts]).to(device))
        if any(spec.uses_uni_heads for spec in used.values()):
            batch.uni_image = gather(self.uni["image"](image_x))
            batch.uni_text = gather(self.uni["text"](text_x))
        parts = {name: spec.call(self.losses[name], batch) for name, spec in used.items()}
        total = sum(stage.losses[name] * value for name, value in parts.items())
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
            with self.precision.autocast():
                loss, parts = self._loss(stage, images, texts, dropout)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in stage '{stage.name}' epoch {epoch + 1} step "
                    f"{step + 1} (parts {parts}): lower lr or check the data; the last good "
                    f"checkpoint is {self.out / 'last.pt'}")
            optimizer.zero_grad()
            self.precision.step(loss, optimizer, lambda: distributed.average_gradients(
                p for g in optimizer.param_groups for p in g["params"]))
            schedule.step()
            for temperature in self.temperatures:  # a tau past its bound comes back to it
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
    def evaluate(self) -> Evaluation:
        """Val metrics of the current heads and backbones (features computed in chunks)."""
        self.heads.eval()
        with torch.inference_mode():
            chunk = self.config.valid_batch_size
            image = embed_side(self.val_sides[0], len(self.val.image), chunk)
            text = embed_side(self.val_sides[1], len(self.val.text), chunk)
        return evaluate_features(self.heads, image, text, self.val, self.config.select_metric)

    def _validate(self, stage: StageConfig, epoch: int, record: dict) -> float:
        where = f"validation in stage '{stage.name}' epoch {epoch + 1}"
        failure, evaluation = None, None
        if self.rank == 0:  # one process validates and writes
            try:
                evaluation = self.evaluate()
            except NonFiniteError as exc:  # else NaN embeddings would score as perfect
                failure = f"{where}: {exc}"
        if distributed.any_rank(failure is not None):  # every process stops, not rank 0 alone
            raise TrainingDiverged(
                f"{failure or where + ' (on rank 0) found non-finite embeddings'}; lower lr or "
                f"check the data; the last good checkpoint is {self.out / 'last.pt'}")
        if self.rank != 0:
            return self.best
        report, score, metric = evaluation.report, evaluation.score, evaluation.primary_metric
        if score > self.best:
            self.best = score
            self.heads.save(self.out / "best.safetensors")
            if self.towers is not None:
                self.towers.save(self.out / "best-backbones.safetensors")
            atomic_save_json(self.out / "best.json", {"stage": stage.name, "epoch": epoch + 1,
                                                     "step": self.step, "val": report})
        self._log({**record, "stage": stage.name, "epoch": epoch + 1,
                   "val_rsum": report["rsum"], f"val_{metric}": score,
                   f"best_{metric}": self.best})
        return score

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
        """Every stage, from the checkpoint's next epoch when `resume` finds one; rank 0
        returns the best val report (best.json)."""
        self._check()
        start_stage, start_epoch, saved = self._resume(resume)
        try:
            for s, stage in enumerate(self.config.stages[start_stage:], start_stage):
                resumed = s == start_stage
                self._run_stage(s, stage, start_epoch if resumed else 0,
                                saved if resumed else None)
        finally:
            self.heads.to("cpu")  # where the caller embeds with them
        distributed.barrier()
        if self.rank != 0:
            return {}
        return json.loads((self.out / "best.json").read_text(encoding="utf-8"))

    def _check(self) -> None:
        """What the stages need of this run, before any work (the config has checked each
        stage on its own): towers for backbone blocks, teacher features, whole shards."""
        size = distributed.rank_and_size()[1]
        for stage in self.config.stages:
            if self.towers is None and stage.trains_backbone:
                raise BadInputError(f"stage '{stage.name}' trains backbone blocks, which needs "
                                    "the towers themselves (crossmodal train), not features")
            if self.towers is not None:
                self.towers.counts(stage)  # refuses blocks that cannot train
            if stage.batch_size % size:
                raise BadInputError(f"stage '{stage.name}': batch_size {stage.batch_size} must "
                                    f"divide evenly over {size} processes")
            if stage.needs_teacher and self.teacher is None:
                raise BadInputError(f"stage '{stage.name}' uses csa/usa but no teacher "
                                    "features were given")

    def _resume(self, resume: bool) -> tuple[int, int, dict | None]:
        """(stage, epoch, checkpoint) to start from: after the checkpoint's epoch when
        resuming, else the start (a fresh run drops the old log and fine-tuned blocks)."""
        checkpoint = self.out / "last.pt"
        if not (resume and checkpoint.is_file()):
            if self.rank == 0:
                for stale in ("log.jsonl", "best-backbones.safetensors"):
                    (self.out / stale).unlink(missing_ok=True)
            return 0, 0, None
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        self.heads.load_state_dict(saved["heads"])
        self.losses.load_state_dict(saved["losses"])
        self.uni.load_state_dict(saved["uni"])
        if self.towers is not None and saved.get("backbones"):
            self.towers.load_state(saved["backbones"], saved["first_trained"])
        self.step, self.best = saved["step"], saved["best"]
        return saved["stage"], saved["epoch"] + 1, saved

    def _run_stage(self, s: int, stage: StageConfig, first_epoch: int,
                   saved: dict | None) -> None:
        """Epochs `first_epoch`.. of stage number `s`; `saved`: the checkpoint resumed in it."""
        if self.towers is not None:
            self.towers.begin(stage)
            self.sides = self.towers.sides(stage, "train")
            self.val_sides = self.towers.sides(stage, "val")
        optimizer, schedule = self._optimizer(stage)
        if saved is not None and first_epoch < stage.max_epochs:
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
        for epoch in tqdm(range(first_epoch, stage.max_epochs), desc=f"stage {stage.name}",
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
