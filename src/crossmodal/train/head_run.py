"""One head-training run end to end: features (cached), training, weights and a report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.index.storage import atomic_save_json
from crossmodal.models.towers import TowersEncoder, find_tower_config
from crossmodal.paths import cache_dir
from crossmodal.train.features import cached_image_features, cached_text_features
from crossmodal.train.heads import FeatureSet, HeadTrainingConfig, train_heads


def feature_set(encoder: TowersEncoder, root: Path, split: str,
                languages: list[str]) -> FeatureSet:
    """Image features once; captions of every language, each pointing at its image row."""
    cache = cache_dir("features")
    image, texts, owners = None, [], []
    for language in languages:
        data = load_flickr8k_cn(root, split, language)
        if image is None:
            image, ids = cached_image_features(encoder, data, cache), data.image_ids
        elif data.image_ids != ids:
            raise ValueError(f"{language} captions cover other images than {languages[0]}")
        texts.append(cached_text_features(encoder, data, cache))
        owners.append(np.asarray(data.text_image))
    return FeatureSet(image, np.concatenate(texts), np.concatenate(owners))


def run_head_training(tower: str, root: Path, languages: list[str],
                      config: HeadTrainingConfig, out: Path | None = None) -> dict:
    tower_config = find_tower_config(tower)
    encoder = TowersEncoder(tower_config, load_heads=False)
    train = feature_set(encoder, Path(root), "train", languages)
    val = feature_set(encoder, Path(root), "val", languages[:1])
    out = Path(out) if out else tower_config.weights_path
    heads, result = train_heads(encoder.heads, train, val, config)
    heads.save(out)
    result.update(weights=str(out), tower=tower_config.name, languages=languages)
    atomic_save_json(out.with_suffix(".json"), result)
    return json.loads(json.dumps(result))
