"""`crossmodal train --config run.toml`: config -> cached features -> staged training ->
best heads + a tower config that loads them (`towers:OUTPUT_DIR/tower.json`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from crossmodal.errors import BadInputError
from crossmodal.models.registry import split_model_id
from crossmodal.models.towers import TowersEncoder, find_tower_config
from crossmodal.models.towers.heads import TowerHeads
from crossmodal.registry import Registry
from crossmodal.storage import atomic_save_json
from crossmodal.train import distributed
from crossmodal.train.config import TrainConfig
from crossmodal.train.fit import fit_encoder


def _train_towers(config: TrainConfig, name: str, resume: bool, progress: bool) -> dict:
    tower = find_tower_config(name)
    if config.context_length:  # CE-CLIP's key: captions truncated to this many tokens
        tower = replace(tower, text={**tower.text, "max_length": int(config.context_length)})
    encoder = TowersEncoder(tower, load_heads=not config.fresh_heads)
    if config.fresh_heads:  # seeded, so a run's initial heads do not depend on what ran before
        torch.manual_seed(config.seed)
        encoder.heads = TowerHeads(encoder.image_backbone.out_dim, encoder.text_backbone.out_dim,
                                   tower.head)
    best, skipped = fit_encoder(config, encoder, resume, progress)
    if distributed.rank_and_size()[0] != 0:
        return {}
    out = Path(config.output_dir).resolve()
    backbones = out / "best-backbones.safetensors"
    trained = replace(
        tower, name=f"{tower.name}-{out.name}", weights=str(out / "best.safetensors"),
        backbone_weights=str(backbones) if backbones.is_file() else None,
        description=f"{tower.description} Fine-tuned by {out / 'config.json'}.")
    atomic_save_json(out / "tower.json", trained.to_dict())
    atomic_save_json(out / "config.json", config.to_dict())
    return {**best, "tower_config": str(out / "tower.json"),
            "model": f"towers:{out / 'tower.json'}",
            "skipped": skipped, "log": str(out / "log.jsonl")}


def _train_hf(config: TrainConfig, name: str, resume: bool, progress: bool) -> dict:
    from crossmodal.train.hf_parts import train_hf  # transformers loads only for hf: runs

    return train_hf(config, name, resume, progress)


# model-id prefix -> trainer(config, name after the prefix, resume, progress) -> summary; a
# plugin backend adds its own through the entry-point group `crossmodal.trainers`.
Trainer = Callable[[TrainConfig, str, bool, bool], dict]
TRAINERS: Registry[Trainer] = Registry("trainer", "crossmodal.trainers")
TRAINERS["towers"] = _train_towers
TRAINERS["hf"] = _train_hf


def run_training(config: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    distributed.init_from_env()
    prefix, name = split_model_id(config.model)
    if prefix == "open_clip":
        raise BadInputError(f"'{config.model}': open_clip models are not supported for "
                            "training (open_clip needs torchvision, which crossmodal does not "
                            "install); train an hf: CLIP / ChineseCLIP or a towers: model")
    if prefix not in TRAINERS:
        raise BadInputError(f"training supports {', '.join(p + ':' for p in TRAINERS)} models, "
                            f"not '{config.model}'")
    return TRAINERS[prefix](config, name, resume, progress)


def load_and_run(path: str | Path, resume: bool = True) -> dict:
    return json.loads(json.dumps(run_training(TrainConfig.load(path), resume)))
