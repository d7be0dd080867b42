"""What the trainer feeds the heads: per side (image, text), either cached frozen features or
the top blocks of the backbone run on cached activations at the first block that trains.

Backbone blocks that train stay in eval mode: BatchNorm keeps its pretrained statistics (a
few thousand images would only add noise to them) and dropout stays off, so cached
activations below the cut and the trainable part agree with inference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crossmodal.errors import BadInputError
from crossmodal.models.towers.backbones import apply_backbone_state
from crossmodal.storage import atomic_save_safetensors
from crossmodal.train.activations import TokenStates, image_activations, text_activations
from crossmodal.train.features import FeatureSet

# rows -> pooled backbone features. Image sides also take `views`: one view index per row
# (training augmentation), or None for every view, (n, views, d), when the tower has tta.
Side = Callable[..., torch.Tensor]


class FrozenSide:
    def __init__(self, features: np.ndarray):
        self.features = features

    def __call__(self, rows: np.ndarray, views: np.ndarray | None = None) -> torch.Tensor:
        chosen = self.features[rows] if views is None else self.features[rows, views]
        return torch.from_numpy(np.ascontiguousarray(chosen))


class ImageBlocksSide:
    """Top image blocks on cached activations: one array per view (tta), or one."""

    def __init__(self, backbone: nn.Module, activations: list[np.ndarray], cut: int):
        self.backbone, self.activations, self.cut = backbone, activations, cut

    def _run(self, activations: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(activations, np.float32))
        if x.ndim == 4:  # conv maps; transformer activations are (n, tokens, hidden)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone.run_blocks(x, self.cut)

    def __call__(self, rows: np.ndarray, views: np.ndarray | None = None) -> torch.Tensor:
        if views is not None:  # one view per row, gathered into one batch
            pairs = zip(rows, views, strict=True)
            return self._run(np.stack([self.activations[view][row] for row, view in pairs]))
        if len(self.activations) == 1:
            return self._run(self.activations[0][rows])
        return torch.stack([self._run(per_view[rows]) for per_view in self.activations], 1)


class TextBlocksSide:
    def __init__(self, backbone: nn.Module, states: TokenStates, cut: int):
        self.backbone, self.states, self.cut = backbone, states, cut

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        x, mask = self.states.batch(np.asarray(rows))
        return self.backbone.run_blocks(x, mask, self.cut)


@torch.inference_mode()
def embed_side(side: Side, n: int, chunk: int = 256) -> torch.Tensor:
    return torch.cat([side(np.arange(start, min(n, start + chunk)))
                      for start in range(0, n, chunk)])


def frozen_sides(features: FeatureSet) -> tuple[Side, Side]:
    return FrozenSide(features.image), FrozenSide(features.text)


class TowerParts:
    """The backbones of a towers encoder while a run trains them.

    `train` / `val` are (dataset, kept image rows, kept text rows, frozen features)."""

    def __init__(self, encoder, train: tuple, val: tuple, cache: Path, progress: bool = True):
        self.encoder, self.splits = encoder, {"train": train, "val": val}
        self.cache, self.progress = cache, progress
        self.backbones = {"image": encoder.image_backbone, "text": encoder.text_backbone}
        self.totals = {side: len(b.blocks()) for side, b in self.backbones.items()}
        # Lowest block index trained so far per side: what the fine-tuned weights hold.
        self.first_trained = dict(self.totals)
        # A run that starts from fine-tuned towers keeps their blocks in what it saves.
        start = encoder.config.backbone_weights_path
        self.inherited: set[str] = set()
        if start is not None:
            from safetensors import safe_open

            with safe_open(str(start), "pt") as weights:  # names only; the encoder loaded them
                self.inherited = set(weights.keys())

    def counts(self, stage) -> dict[str, int]:
        counts = {side: stage.blocks_to_train(side, total) for side, total in self.totals.items()}
        for side, count in counts.items():
            backbone = self.backbones[side]
            if count and getattr(backbone, "trainable", True) is False:
                raise BadInputError(
                    f"stage '{stage.name}': the {side} tower ({type(backbone).__name__}) is a "
                    f"frozen engine and cannot train; set train_{side}_blocks = 0")
        return counts

    def begin(self, stage) -> None:
        """Before a stage: only its blocks take gradients; a block trained in an earlier stage
        keeps running live (its cached input would be stale otherwise)."""
        for side, count in self.counts(stage).items():
            self.first_trained[side] = min(self.first_trained[side], self.totals[side] - count)
        for backbone in self.backbones.values():
            backbone.requires_grad_(False)
        for block in self.modules(stage):
            block.requires_grad_(True)

    def modules(self, stage) -> list[nn.Module]:
        blocks = []
        for side, count in self.counts(stage).items():
            if count:
                blocks += self.backbones[side].blocks()[-count:]
        return blocks

    def sides(self, stage, split: str) -> tuple[Side, Side]:
        """Call after begin(stage): sides run from the lowest block trained so far."""
        data, images, texts, frozen = self.splits[split]
        image: Side = FrozenSide(frozen.image)
        text: Side = FrozenSide(frozen.text)
        if self.first_trained["image"] < self.totals["image"]:
            cut = self.first_trained["image"]
            per_view = [image_activations(self.encoder, data, cut, self.cache, self.progress,
                                          view)[0]
                        for view in getattr(self.encoder, "image_views", ("plain",))]
            image = ImageBlocksSide(self.backbones["image"],
                                    [_rows(activations, images) for activations in per_view], cut)
        if self.first_trained["text"] < self.totals["text"]:
            cut = self.first_trained["text"]
            states = text_activations(self.encoder, data.texts, cut, self.cache, self.progress)
            text = TextBlocksSide(self.backbones["text"], _ragged_rows(states, texts), cut)
        return image, text

    # --- the weights of the blocks trained so far ----------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Current weights of the inherited fine-tuned blocks and of every block trained so
        far, keyed "image.<name>" / "text.<name>" (what load_backbone_weights reads)."""
        state = {}
        for side, backbone in self.backbones.items():
            blocks = backbone.blocks()[self.first_trained[side]:]
            owned = {id(t) for b in blocks for t in [*b.parameters(), *b.buffers()]}
            for name, tensor in backbone.state_dict(keep_vars=True).items():
                key = f"{side}.{name}"
                if id(tensor) in owned or key in self.inherited:
                    state[key] = tensor.detach().clone().contiguous()
        return state

    def load_state(self, state: dict[str, torch.Tensor], first_trained: dict[str, int]) -> None:
        self.first_trained = dict(first_trained)
        apply_backbone_state(self.backbones["image"], self.backbones["text"], state, "checkpoint")

    def save(self, path: Path) -> bool:
        """Fine-tuned blocks as safetensors; False (nothing written) when none trained."""
        state = self.state()
        if state:
            atomic_save_safetensors(Path(path), state)
        return bool(state)


def _rows(array: np.ndarray, rows: list[int]) -> np.ndarray:
    return array if len(rows) == len(array) and rows == list(range(len(array))) else array[rows]


def _ragged_rows(states: TokenStates, rows: list[int]) -> TokenStates:
    if rows == list(range(len(states.offsets) - 1)):
        return states
    lengths = states.offsets[np.array(rows) + 1] - states.offsets[np.array(rows)]
    values = np.concatenate([states.values[states.offsets[r]:states.offsets[r + 1]]
                             for r in rows])
    return TokenStates(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
