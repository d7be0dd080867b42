"""The staged trainer on synthetic features: learning, resume, divergence, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossmodal.errors import BadInputError
from crossmodal.models.towers.heads import TowerHeads
from crossmodal.train.features import FeatureSet
from crossmodal.train.heads import evaluate_heads
from crossmodal.train.trainer import StageTrainer, TeacherFeatures, TrainingDiverged
from tests.trainer_helpers import STAGES, config, heads, synthetic


def test_training_improves_validation_and_keeps_the_best(tmp_path):
    train, val = synthetic(128, 1), synthetic(32, 2)
    model = heads()
    before = evaluate_heads(model, val)["rsum"]
    best = StageTrainer(config(tmp_path, STAGES), model, train, val, progress=False).fit()
    assert best["val"]["rsum"] > before + 50
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "last.pt").is_file()
    log = [line for line in (tmp_path / "log.jsonl").read_text().splitlines() if line]
    assert len(log) == 6 and '"train_instance"' in log[0]


def test_resume_after_interruption_gives_the_same_result(tmp_path, monkeypatch):
    train, val = synthetic(64, 3), synthetic(16, 4)
    whole = heads()
    StageTrainer(config(tmp_path / "a", STAGES), whole, train, val, progress=False).fit()

    calls = {"n": 0}
    real = StageTrainer._run_epoch

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:  # stage two, second epoch: killed mid-run
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(StageTrainer, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        StageTrainer(config(tmp_path / "b", STAGES), heads(), train, val, progress=False).fit()
    monkeypatch.setattr(StageTrainer, "_run_epoch", real)
    resumed = heads()
    StageTrainer(config(tmp_path / "b", STAGES), resumed, train, val, progress=False).fit()
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    train, val = synthetic(64, 5), synthetic(16, 6)
    train.image[:] = np.nan
    trainer = StageTrainer(config(tmp_path, STAGES[:1]), heads(), train, val, progress=False)
    with pytest.raises(TrainingDiverged, match="loss became nan in stage 'one' epoch 1"):
        trainer.fit()


def test_non_finite_validation_embeddings_stop_training_instead_of_scoring_600(tmp_path):
    train, val = synthetic(64, 5), synthetic(16, 6)
    val.image[:] = np.nan  # training stays finite; only the validation embeddings break
    trainer = StageTrainer(config(tmp_path, STAGES[:1]), heads(), train, val, progress=False)
    with pytest.raises(TrainingDiverged, match="validation in stage 'one' epoch 1: "
                                               "16 of 16 image rows and 0 of 32 text rows"):
        trainer.fit()
    assert not (tmp_path / "best.safetensors").exists()


def test_cusa_losses_train_with_teacher_features(tmp_path):
    train, val = synthetic(64, 7), synthetic(16, 8)
    teacher = TeacherFeatures(train.image.copy(), train.text.copy())
    stages = [{"name": "cusa", "losses": {"infonce": 1.0, "csa": 0.1, "usa": 0.5},
               "max_epochs": 2, "batch_size": 16}]
    cfg = config(tmp_path, stages, teacher={"dir": str(tmp_path), "name": "t"})
    StageTrainer(cfg, heads(), train, val, teacher, progress=False).fit()
    first = (tmp_path / "log.jsonl").read_text().splitlines()[0]
    assert '"train_csa"' in first and '"train_usa"' in first


@pytest.mark.parametrize("stages,extra,message", [
    ([{"freeze": "everything"}], {}, "freeze must be one of"),
    ([{"losses": {"triplet": 1.0}}], {}, "losses must be a table"),
    ([{"losses": {"csa": 0.1}}], {}, "need \\[teacher\\] features"),
    ([{"epochs": 3}], {}, "unknown keys \\['epochs'\\]"),
    ([{}], {"learning_rate": 1}, "unknown keys \\['learning_rate'\\]"),
])
def test_config_errors(tmp_path, stages, extra, message):
    with pytest.raises(BadInputError, match=message):
        config(tmp_path, stages, **extra)


def test_backbone_stages_without_towers_are_refused_clearly(tmp_path):
    trainer = StageTrainer(config(tmp_path, [{"freeze": "image"}]), heads(), synthetic(32, 9),
                          synthetic(8, 10), progress=False)
    with pytest.raises(BadInputError, match="trains backbone blocks"):
        trainer.fit()


@pytest.mark.parametrize(("stage", "image", "text"), [
    ({"freeze": "towers"}, 0, 0),
    ({"freeze": "image"}, 0, 7),
    ({"freeze": "text"}, 18, 0),
    ({"freeze": "none"}, 18, 7),
    ({"freeze": "towers", "train_image_blocks": 3, "train_text_blocks": "all"}, 3, 7),
    ({"freeze": "none", "train_image_blocks": 40, "train_text_blocks": 0}, 18, 0),
])
def test_freezing_policies_resolve_to_block_counts(tmp_path, stage, image, text):
    resolved = config(tmp_path, [stage]).stages[0]
    assert (resolved.blocks_to_train("image", 18), resolved.blocks_to_train("text", 7)) == (
        image, text)


@pytest.mark.parametrize("value", [-1, 1.5, "some", True])
def test_block_counts_must_be_counts(tmp_path, value):
    with pytest.raises(BadInputError, match="train_image_blocks must be a count"):
        config(tmp_path, [{"train_image_blocks": value}])


def with_views_and_captions(data: FeatureSet, seed: int) -> FeatureSet:
    """A second, slightly different view of each image (as a mirror image gives) and a caption
    string per text, for heads with tta views and a gram bag."""
    rng = np.random.default_rng(seed)
    mirror = data.image + 0.1 * rng.standard_normal(data.image.shape).astype(np.float32)
    captions = [f"a photo number {i % 3}" for i in range(len(data.text))]
    return FeatureSet(np.stack([data.image, mirror], 1), data.text, data.text_image, captions)


def test_views_gram_bag_and_every_loss_train_together(tmp_path):
    train = with_views_and_captions(synthetic(64, 9), 1)
    val = with_views_and_captions(synthetic(16, 10), 2)
    torch.manual_seed(0)
    model = TowerHeads(12, 10, {"dim": 8, "grams": {"unit": "words", "min_count": 1}})
    model.grams.fit(train.texts)
    teacher = TeacherFeatures(train.image[:, 0].copy(), train.text.copy())
    stages = [{"name": "all", "losses": {"infonce": 1.0, "instance": 1.0, "csa": 0.1, "usa": 0.5},
               "max_epochs": 3, "batch_size": 16, "warmup": 2, "lr": 0.01}]
    cfg = config(tmp_path, stages, teacher={"dir": str(tmp_path), "name": "t"})
    before = evaluate_heads(model, val)["rsum"]
    best = StageTrainer(cfg, model, train, val, teacher, progress=False).fit()
    assert best["val"]["rsum"] > before + 50
    table = model.grams.table.weight
    assert table[:-1].abs().sum() > 0 and table[-1].abs().sum() == 0  # padding row stays 0
