"""Training without back-and-forth: run.py and hf_parts.py both fit through fit.py and
import neither each other nor fit.py importing them; a fit split into its steps."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import crossmodal.train as train_package
from crossmodal.train.trainer import StageTrainer

TRAIN = Path(train_package.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_run_and_hf_parts_do_not_import_each_other():
    assert "crossmodal.train.run" not in imported_modules(TRAIN / "hf_parts.py")
    assert "crossmodal.train.fit" in imported_modules(TRAIN / "hf_parts.py")
    assert "crossmodal.train.fit" in imported_modules(TRAIN / "run.py")
    fit = imported_modules(TRAIN / "fit.py")
    assert not fit & {"crossmodal.train.run", "crossmodal.train.hf_parts"}


def test_feature_set_lives_with_the_features():
    assert "class FeatureSet" in (TRAIN / "features.py").read_text(encoding="utf-8")
    assert "class FeatureSet" not in (TRAIN / "heads.py").read_text(encoding="utf-8")


def test_fit_is_split_into_check_resume_and_run_stage():
    for step in ("_check", "_resume", "_run_stage"):
        assert callable(getattr(StageTrainer, step))
    for method in (StageTrainer.fit, StageTrainer._check, StageTrainer._resume,
                   StageTrainer._run_stage):
        assert len(inspect.getsource(method).splitlines()) <= 40, method.__name__
