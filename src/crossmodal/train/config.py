"""Training runs as data: a TOML (or JSON) file of stages, each with its freezing policy,
losses, learning rate and length. Keys follow CE-CLIP / Chinese-CLIP where they exist
(context_length, warmup, batch_size, valid_batch_size, lr, wd, max_epochs,
valid_step_interval, valid_epoch_interval, save_epoch_interval).

    model = "towers:lite-en"
    train_data = "flickr8k-cn:../shared/data/flickr8k-cn:train:en"
    val_data = "flickr8k-cn:../shared/data/flickr8k-cn:val:en"
    output_dir = "runs/lite-en"

    [[stages]]
    name = "heads"
    freeze = "towers"            # towers | image | text | none
    losses = { infonce = 1.0, instance = 1.0 }
    lr = 1e-3
    max_epochs = 20

    [[stages]]
    name = "top-blocks"
    train_image_blocks = 3       # the top 3 blocks of the image tower (or "all")
    train_text_blocks = 2        # the top 2 layers of the text tower
    backbone_lr = 2e-5
    losses = { infonce = 1.0 }

    [loss_params.infonce]        # optional: a loss's hyper-parameters (its constructor's)
    tau = 0.07

`freeze` names the towers that stay frozen; `train_image_blocks` / `train_text_blocks`
override it with the number of top blocks that train. Heads always train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from crossmodal.config_files import build, read_config_file
from crossmodal.errors import BadInputError
from crossmodal.losses.registry import LOSSES, check_loss_params

FREEZE = ("towers", "image", "text", "none")
BLOCKS = 'a count >= 0 or "all"'


@dataclass
class StageConfig:
    name: str = "stage"
    freeze: str = "towers"  # which backbones stay frozen; heads always train
    losses: dict[str, float] = field(default_factory=lambda: {"infonce": 1.0})
    lr: float = 1e-3
    wd: float = 0.05
    warmup: int = 100  # steps of linear warm-up, then cosine decay to 0
    max_epochs: int = 10
    batch_size: int = 256
    # Top blocks that train; "all"; None: by freeze.
    train_image_blocks: int | str | None = field(default=None, metadata={"must_be": BLOCKS})
    train_text_blocks: int | str | None = field(default=None, metadata={"must_be": BLOCKS})
    backbone_lr: float | None = None  # lr of backbone blocks; None: the stage's lr

    def blocks_to_train(self, side: str, total: int) -> int:
        """How many top blocks of the `side` tower ("image" or "text") train in this stage."""
        explicit = self.train_image_blocks if side == "image" else self.train_text_blocks
        if explicit is None:
            frozen = self.freeze in ("towers", side)
            return 0 if frozen else total
        return total if explicit == "all" else min(int(explicit), total)

    @property
    def trains_backbone(self) -> bool:
        """Whether any backbone block trains in this stage (it then needs the towers)."""
        return any(self.blocks_to_train(side, 1) for side in ("image", "text"))

    @property
    def needs_teacher(self) -> bool:
        return any(weight and LOSSES[name].needs_teacher for name, weight in self.losses.items())

    def validate(self, where: str) -> None:
        if self.freeze not in FREEZE:
            raise BadInputError(f"{where}: freeze must be one of {FREEZE}, not {self.freeze!r}")
        for key in ("train_image_blocks", "train_text_blocks"):
            value = getattr(self, key)
            if value is not None and value != "all" and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise BadInputError(f"{where}: {key} must be {BLOCKS}, not {value!r}")
        unknown = sorted(set(self.losses) - set(LOSSES))
        if unknown or not self.losses:
            raise BadInputError(f"{where}: losses must be a table of {tuple(LOSSES)} -> "
                                f"weight, got {sorted(self.losses)}")
        if self.max_epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise BadInputError(f"{where}: need max_epochs >= 1, batch_size >= 2, lr > 0")


@dataclass
class TeacherConfig:
    """Teacher features written by `crossmodal teacher-features`: their folder and name."""

    dir: str
    name: str


@dataclass
class TrainConfig:
    model: str
    train_data: str | dict
    val_data: str | dict
    output_dir: str = "runs/train"
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    seed: int = 0
    context_length: int | None = None
    valid_batch_size: int = 256
    valid_step_interval: int = 0  # 0: validate by epochs only
    valid_epoch_interval: int = 1
    save_epoch_interval: int = 1
    teacher: TeacherConfig | None = None
    input_dropout: float = 0.1
    fresh_heads: bool = False  # True: random heads (ablations); False: start from the model's
    # Hyper-parameters per loss name, over the recipe in losses/registry.py; one loss module
    # per name serves every stage (its learned temperature carries over).
    loss_params: dict[str, dict] = field(default_factory=dict)
    # The validation metric that selects the best checkpoint: rsum, or one direction's
    # larger-is-better metric ("text_to_image/R@1", "image_to_text/mAP@R").
    select_metric: str = "rsum"

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> TrainConfig:
        """A run from its parsed table: unknown keys and wrong types refused with their path
        (`stages[2].lr`, stages counted from 1), then each stage's own checks."""
        if isinstance(data, dict) and not data.get("stages"):
            data = {**data, "stages": [{}]}  # no stages: one default stage
        config = build(cls, data, where)
        for number, stage in enumerate(config.stages, 1):
            stage.validate(f"{where}: stage {number} ({stage.name})")
        config.loss_params = {
            name: check_loss_params(name, table, where, f"loss_params.{name}")
            for name, table in config.loss_params.items()}
        _check_select_metric(config.select_metric, where)
        if any(stage.needs_teacher for stage in config.stages) and not config.teacher:
            raise BadInputError(f"{where}: csa/usa losses need [teacher] features: run "
                                "`crossmodal teacher-features` and set teacher.dir/name")
        return config

    @property
    def trains_backbones(self) -> bool:
        return any(stage.trains_backbone for stage in self.stages)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_config_file(path, "training config"), str(path))

    def to_dict(self) -> dict:
        data = asdict(self)
        if not data["loss_params"]:  # left out when unset: config.json as before
            del data["loss_params"]
        if data["select_metric"] == "rsum":
            del data["select_metric"]
        return data


def _check_select_metric(metric: str, where: str) -> None:
    from crossmodal.evaluation.evaluators import ImageTextEvaluator

    known = ImageTextEvaluator.selectable_metrics()
    if metric not in known:
        raise BadInputError(f"{where}: select_metric must be one of {', '.join(known)} (a "
                            f"larger-is-better validation metric), not {metric!r}")
