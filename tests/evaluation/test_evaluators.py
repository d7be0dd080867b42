"""Every evaluation has one shape: made from its data, called on an encoder, it returns the
report, its metrics by name and the primary one; training selects its checkpoint by it."""

from __future__ import annotations

import json

import pytest

from crossmodal.data.sts import load_sts
from crossmodal.errors import BadInputError
from crossmodal.evaluation.classify import TEMPLATES, read_class_folder, zero_shot_accuracy
from crossmodal.evaluation.evaluators import (
    EVALUATORS,
    Evaluation,
    ImageTextEvaluator,
    StsEvaluator,
    ZeroShotEvaluator,
    dataset_evaluator,
    flat_metrics,
)
from crossmodal.evaluation.run import evaluate_model, evaluate_model_within
from crossmodal.evaluation.sts import evaluate_sts_files
from tests.evaluation.conftest import COLOURS
from tests.image_helpers import write_image
from tests.trainer_helpers import STAGES, config, heads, synthetic

EN = [("a red car", "a red car", 5.0), ("a red car", "a red truck", 4.0),
      ("a blue sky", "a green tree", 0.5), ("green grass", "a red apple", 1.0)]


def write_csv(path, rows):
    path.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in rows), encoding="utf-8")
    return path


def test_every_builtin_evaluator_is_registered_by_its_name():
    assert list(EVALUATORS)[:5] == ["image-text", "image-image", "text-text", "sts",
                                    "zero-shot"]
    for name in EVALUATORS:
        factory = EVALUATORS[name]
        assert factory.name == name and factory.data in ("dataset", "sts", "classes")


def test_image_text_evaluator_reports_what_evaluate_model_does(colour_dataset, fake_encoder):
    evaluation = ImageTextEvaluator(colour_dataset)(fake_encoder, progress=False)
    direct = evaluate_model(fake_encoder, colour_dataset, progress=False)
    assert {k: v for k, v in evaluation.report.items() if k != "cached_embeddings"} == \
        {k: v for k, v in direct.items() if k != "cached_embeddings"}
    assert evaluation.primary_metric == "rsum" and evaluation.score == 600.0
    assert evaluation.metrics["text_to_image/R@1"] == 100.0
    assert "images" not in evaluation.metrics  # counts are no metrics


def test_within_evaluators_are_the_within_function(colour_dataset, fake_encoder):
    evaluation = dataset_evaluator("text-text", colour_dataset)(fake_encoder, progress=False)
    direct = evaluate_model_within(fake_encoder, colour_dataset, "text-text", progress=False)
    assert evaluation.report["within"] == direct["within"]
    assert evaluation.primary_metric == "within/R@1" and evaluation.score == 100.0
    with pytest.raises(BadInputError, match="protocol 'full'"):
        dataset_evaluator("image-image", colour_dataset, protocol="5fold")


def test_sts_and_zero_shot_evaluators_wrap_their_functions(tmp_path, fake_encoder):
    pairs = load_sts(str(write_csv(tmp_path / "en.csv", EN)))
    evaluation = StsEvaluator([pairs])(fake_encoder, progress=False)
    assert evaluation.report["rows"] == evaluate_sts_files(fake_encoder.encode_texts, [pairs])
    assert evaluation.primary_metric == "en/spearman"
    assert evaluation.score == evaluation.report["rows"][0]["spearman"]

    for name, rgb in COLOURS.items():
        write_image(tmp_path / "classes" / name / "a.png", rgb)
    folder = read_class_folder(tmp_path / "classes")
    evaluation = ZeroShotEvaluator(folder, TEMPLATES["en"])(fake_encoder, progress=False)
    assert evaluation.report == zero_shot_accuracy(fake_encoder, folder, TEMPLATES["en"],
                                                   progress=False)
    assert evaluation.score == 100.0 and evaluation.metrics["per_class_top1/red"] == 100.0


def test_eval_refuses_evaluators_not_made_from_a_dataset(colour_dataset):
    with pytest.raises(BadInputError, match="crossmodal eval-sts"):
        dataset_evaluator("sts", colour_dataset)
    with pytest.raises(BadInputError, match="unknown evaluation task 'nope'"):
        dataset_evaluator("nope", colour_dataset)


def test_a_plugin_evaluator_is_chosen_by_name(colour_dataset, fake_encoder, monkeypatch):
    class Count:
        name, data, layouts = "count", "dataset", ()

        def __init__(self, dataset, **options):
            self.dataset, self.primary_metric = dataset, "images"

        def __call__(self, encoder, progress=True):
            return Evaluation({"images": float(len(self.dataset.images))},
                              {"images": float(len(self.dataset.images))}, "images")

    monkeypatch.setitem(EVALUATORS._entries, "count", Count)
    assert dataset_evaluator("count", colour_dataset)(fake_encoder).score == 3.0


def test_unknown_primary_metric_is_refused():
    assert flat_metrics({"a": {"b": 1.0, "n": 3}, "c": 2.0, "name": "x"}) == {"a/b": 1.0,
                                                                             "c": 2.0}
    with pytest.raises(BadInputError, match="no metric 'rsum'"):
        Evaluation.of({"c": 2.0}, "rsum")


def test_training_selects_the_checkpoint_by_the_configured_metric(tmp_path):
    from crossmodal.train.trainer import StageTrainer

    train, val = synthetic(64, 1), synthetic(16, 2)
    metric = "text_to_image/R@1"
    best = StageTrainer(config(tmp_path, STAGES, select_metric=metric), heads(), train, val,
                        progress=False).fit()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()
           if "val_rsum" in line]
    scores = [record[f"val_{metric}"] for record in log]
    assert best["val"]["text_to_image"]["R@1"] == max(scores)
    assert log[-1][f"best_{metric}"] == max(scores) and "best_rsum" not in log[-1]
    # the default stays Rsum, and config.json stays as it was
    assert "select_metric" not in config(tmp_path / "d", STAGES).to_dict()
    for bad in ("text_to_image/MedR", "recall"):
        with pytest.raises(BadInputError, match="select_metric must be one of"):
            config(tmp_path / "bad", STAGES, select_metric=bad)
