"""From an encoder and a training config to a trained encoder: features of the splits,
teacher features, the trainable towers, then the stages (trainer.py). Both `train/run.py`
(towers:) and `train/hf_parts.py` (hf:) fit through here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.registry import load_dataset
from crossmodal.errors import BadInputError
from crossmodal.paths import cache_dir
from crossmodal.train import distributed
from crossmodal.train.config import TrainConfig
from crossmodal.train.features import FeatureSet, cached_image_features, cached_text_features
from crossmodal.train.tower_parts import TowerParts
from crossmodal.train.trainer import StageTrainer, TeacherFeatures


def dataset_features(encoder, data: RetrievalDataset, progress: bool = True
                     ) -> tuple[FeatureSet, list[int], list[int]]:
    """Features of the readable images and their captions; unreadable images (and captions
    only they had) are left out, counted in `data.skipped`. Also returns the kept image and
    text rows, to align teacher features the same way."""
    cache = cache_dir("features")
    image, failed = cached_image_features(encoder, data, cache, progress=progress)
    text = cached_text_features(encoder, data, cache, progress=progress)
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

    folder = Path(config.teacher.dir).expanduser()
    loaded = load_teacher_features(folder, config.teacher.name, data)
    image, text = loaded["images"], loaded["texts"]
    if image is None or text is None:
        raise BadInputError("csa/usa need both image and text teacher features")
    return TeacherFeatures(np.asarray(image, np.float32)[keep], np.asarray(text, np.float32)[texts])


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
        if config.trains_backbones:
            towers = TowerParts(encoder, (train_data, keep, texts, train),
                                (val_data, val_keep, val_texts, val), cache_dir("features"),
                                progress)
    grams = getattr(encoder.heads, "grams", None)
    if grams is not None and not grams.vocab:  # fresh heads: the vocabulary of train captions
        grams.fit(train.texts)
    trainer = StageTrainer(config, encoder.heads, train, val,
                           _teacher(config, train_data, keep, texts), progress, towers)
    best = trainer.fit(resume=resume)
    return best, {k: len(v) for k, v in skipped.items()}
