"""`crossmodal train --config run.toml`: config -> cached features -> staged training ->
best heads + a tower config that loads them (`towers:OUTPUT_DIR/tower.json`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.registry import load_dataset
from crossmodal.errors import BadInputError
from crossmodal.models.registry import split_model_id
from crossmodal.models.towers import TowersEncoder, find_tower_config
from crossmodal.models.towers.heads import TowerHeads
from crossmodal.paths import cache_dir
from crossmodal.storage import atomic_save_json
from crossmodal.train import distributed
from crossmodal.train.config import TrainConfig
from crossmodal.train.features import cached_image_features, cached_text_features
from crossmodal.train.heads import FeatureSet
from crossmodal.train.tower_parts import TowerParts
from crossmodal.train.trainer import HeadTrainer, TeacherFeatures


def dataset_features(encoder: TowersEncoder, data: RetrievalDataset
                     ) -> tuple[FeatureSet, list[int], list[int]]:
    """Features of the readable images and their captions; unreadable images (and captions
    only they had) are left out, counted in `data.skipped`. Also returns the kept image and
    text rows, to align teacher features the same way."""
    cache = cache_dir("features")
    image, failed = cached_image_features(encoder, data, cache)
    text = cached_text_features(encoder, data, cache)
    bad = {row for row, _ in failed}
    data.skipped.extend((data.image_ids[row], why) for row, why in failed)
    keep = [row for row in range(len(data.images)) if row not in bad]
    texts, positives = data.restrict(keep)
    if not keep or not texts:
        raise BadInputError(f"{data.name}: no readable image with a caption to train on")
    features = FeatureSet(image[keep], text[texts], np.array([p[0] for p in positives]),
                          [data.texts[t] for t in texts])
    return features, keep, texts


def _teacher(config: TrainConfig, data: RetrievalDataset, keep: list[int],
             texts: list[int]) -> TeacherFeatures | None:
    if not config.teacher:
        return None
    from crossmodal.train.teachers import load_teacher_features

    folder = Path(config.teacher["dir"]).expanduser()
    loaded = load_teacher_features(folder, config.teacher["name"], data)
    image, text = loaded["images"], loaded["texts"]
    if image is None or text is None:
        raise BadInputError("csa/usa need both image and text teacher features")
    return TeacherFeatures(np.asarray(image, np.float32)[keep], np.asarray(text, np.float32)[texts])


def run_training(config: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    distributed.init_from_env()
    prefix, name = split_model_id(config.model)
    if prefix == "hf":
        from crossmodal.train.hf_parts import train_hf

        return train_hf(config, name, resume, progress)
    if prefix == "open_clip":
        raise BadInputError(f"'{config.model}': open_clip models are not supported for "
                            "training (open_clip needs torchvision, which crossmodal does not "
                            "install); train an hf: CLIP / ChineseCLIP or a towers: model")
    if prefix != "towers":
        raise BadInputError(f"training supports towers: and hf: (clip, chinese_clip) models, "
                            f"not '{config.model}'")
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


def fit_encoder(config: TrainConfig, encoder, resume: bool = True, progress: bool = True
                ) -> tuple[dict, dict[str, int]]:
    """Features, stages and validation for any encoder with the towers' training attributes
    (image_backbone / text_backbone blocks, heads; hf_parts.HFTrainable for hf:): the best
    val report, and how many unreadable items each split skipped."""
    train_data, val_data = load_dataset(config.train_data), load_dataset(config.val_data)
    skipped = {"train": train_data.skipped, "val": val_data.skipped}
    progress = progress and distributed.rank_and_size()[0] == 0
    with distributed.main_process_first():  # one process fills the feature caches
        train, keep, texts = dataset_features(encoder, train_data)
        val, val_keep, val_texts = dataset_features(encoder, val_data)
        towers = None
        trains_blocks = any(stage.blocks_to_train(side, 1) for stage in config.stages
                            for side in ("image", "text"))
        if trains_blocks:
            towers = TowerParts(encoder, (train_data, keep, texts, train),
                                (val_data, val_keep, val_texts, val), cache_dir("features"),
                                progress)
            for stage in config.stages:  # a block that cannot train fails before any work
                towers.counts(stage)
    grams = getattr(encoder.heads, "grams", None)
    if grams is not None and not grams.vocab:  # fresh heads: the vocabulary of train captions
        grams.fit(train.texts)
    trainer = HeadTrainer(config, encoder.heads, train, val,
                          _teacher(config, train_data, keep, texts), progress, towers)
    best = trainer.fit(resume=resume)
    return best, {k: len(v) for k, v in skipped.items()}


def load_and_run(path: str | Path, resume: bool = True) -> dict:
    return json.loads(json.dumps(run_training(TrainConfig.load(path), resume)))
