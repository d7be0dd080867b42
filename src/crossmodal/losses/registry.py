"""Losses by name, in a Registry: name -> class, what each takes from a batch, and the
trainer's recipe over the class's defaults. A training config names losses with weights per
stage and may set each loss's hyper-parameters in a table (`[loss_params.infonce] tau =
0.07`); every loss describes its hyper-parameters with `get_config_dict()` (as
sentence-transformers' losses do), and `build_loss(name, params)` makes one (as
open_clip's `create_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from crossmodal.config_files import build_kwargs
from crossmodal.errors import BadInputError
from crossmodal.losses.infonce import InfoNCELoss
from crossmodal.losses.instance import InstanceLoss
from crossmodal.losses.soft_label import CSALoss, USALoss
from crossmodal.registry import Registry


@dataclass
class LossInputs:
    """What one training step offers the losses (all rows of the global batch)."""

    image: torch.Tensor  # (B, D) image embeddings
    text: torch.Tensor  # (B, D) caption embeddings, row i a caption of image row i
    image_ids: torch.Tensor  # (B,) instance id (training image row) of each pair
    teacher_image: torch.Tensor | None = None  # (B, B) teacher similarities, needs_teacher
    teacher_text: torch.Tensor | None = None
    uni_image: torch.Tensor | None = None  # uni-modal embeddings, uses_uni_heads
    uni_text: torch.Tensor | None = None


@dataclass(frozen=True)
class LossSpec:
    cls: type[nn.Module]
    call: Callable[[nn.Module, LossInputs], torch.Tensor]
    recipe: dict = field(default_factory=dict)  # the trainer's values over the class defaults
    context: tuple[str, ...] = ()  # constructor arguments that come from the data
    needs_teacher: bool = False
    uses_uni_heads: bool = False  # USA: its own heads on the backbone features


# In the order their terms are summed (kept: it fixes the float result of the sum); a plugin
# adds a LossSpec under its name through the entry-point group `crossmodal.losses`.
LOSSES: Registry[LossSpec] = Registry("loss", "crossmodal.losses")
# CUSA's contrastive setting: tau 0.05, learnable, clamped to [0.01, 0.1].
LOSSES["infonce"] = LossSpec(InfoNCELoss, lambda loss, b: loss(b.image, b.text),
                             recipe={"tau": 0.05, "min_tau": 0.01, "max_tau": 0.1})
LOSSES["instance"] = LossSpec(InstanceLoss, lambda loss, b: loss(b.image, b.text, b.image_ids),
                              context=("dim", "num_instances"))
LOSSES["csa"] = LossSpec(CSALoss, lambda loss, b: loss(b.image, b.text, b.teacher_image,
                                                       b.teacher_text), needs_teacher=True)
LOSSES["usa"] = LossSpec(USALoss, lambda loss, b: loss(b.uni_image, b.uni_text,
                                                       b.teacher_image, b.teacher_text),
                         needs_teacher=True, uses_uni_heads=True)


def loss_spec(name: str, where: str = "losses") -> LossSpec:
    if name not in LOSSES:
        raise BadInputError(f"{where}: unknown loss {name!r} (known: {', '.join(LOSSES)})")
    return LOSSES[name]


def check_loss_params(name: str, params: Mapping, where: str, path: str) -> dict:
    """`params` for the loss `name` checked against its constructor: unknown keys named with
    their path, wrong types refused, numbers as the declared type."""
    spec = loss_spec(name, where)
    return build_kwargs(spec.cls, params, where, path, leave_out=spec.context)


def build_loss(name: str, params: Mapping | None = None, where: str = "losses",
               **context: int) -> nn.Module:
    """The loss `name` with the recipe's values, then `params`, over its class defaults;
    `context` gives the arguments that come from the data (the instance loss's dim and
    num_instances)."""
    spec = loss_spec(name, where)
    checked = check_loss_params(name, {**spec.recipe, **(params or {})}, where,
                                f"loss_params.{name}")
    missing = [key for key in spec.context if key not in context]
    if missing:
        raise ValueError(f"loss {name!r} needs {missing} from the data")
    return spec.cls(**checked, **{key: context[key] for key in spec.context})
