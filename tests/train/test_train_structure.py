"""Training's shape: the features with their set, a fit split into its steps. What the
training modules may import is checked with every other module in test_import_rules.py."""

from __future__ import annotations

import inspect
from pathlib import Path

import crossmodal.train as train_package
from crossmodal.train.trainer import StageTrainer

TRAIN = Path(train_package.__file__).parent


def test_feature_set_lives_with_the_features():
    assert "class FeatureSet" in (TRAIN / "features.py").read_text(encoding="utf-8")
    assert "class FeatureSet" not in (TRAIN / "heads.py").read_text(encoding="utf-8")


def test_fit_is_split_into_check_resume_and_run_stage():
    for step in ("_check", "_resume", "_run_stage"):
        assert callable(getattr(StageTrainer, step))
    for method in (StageTrainer.fit, StageTrainer._check, StageTrainer._resume,
                   StageTrainer._run_stage):
        assert len(inspect.getsource(method).splitlines()) <= 40, method.__name__
