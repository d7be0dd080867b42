"""One shape for every evaluation, as sentence-transformers' SentenceEvaluator: an evaluator
is made from its data and options, then called on an encoder; it returns an `Evaluation`,
the full report (what `crossmodal eval` writes), its metrics flat by name ("rsum",
"image_to_text/R@1", "top1", ...) and which one is primary (what selects a checkpoint).

Built-ins, by name in `EVALUATORS`: image-text (both cross-modal directions), image-image
and text-text (within one modality), sts (sentence similarity) and zero-shot
(classification from label texts); each wraps the free function that computes it. A plugin
adds one through the entry-point group `crossmodal.evaluators`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.sts import StsPairs
from crossmodal.errors import BadInputError
from crossmodal.evaluation.classify import ClassFolder, zero_shot_accuracy
from crossmodal.evaluation.run import KS_ALL, evaluate_model, evaluate_model_within
from crossmodal.evaluation.sts import evaluate_sts_files
from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.metrics.retrieval import DEFAULT_KS
from crossmodal.models.protocol import Encoder
from crossmodal.registry import Registry

# Rank statistics where a smaller value is better; a checkpoint is never chosen by them.
LOWER_IS_BETTER = ("MedR", "MnR")


def flat_metrics(report: dict, prefix: str = "") -> dict[str, float]:
    """The float leaves of a report, nested keys joined by "/" (counts and names left out)."""
    metrics: dict[str, float] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            metrics.update(flat_metrics(value, f"{prefix}{key}/"))
        elif isinstance(value, float):
            metrics[f"{prefix}{key}"] = value
    return metrics


@dataclass(frozen=True)
class Evaluation:
    report: dict  # everything the evaluation found, as written to its JSON file
    metrics: dict[str, float]  # the numbers by name
    primary_metric: str  # the name of the one that ranks models and checkpoints

    @classmethod
    def of(cls, report: dict, primary_metric: str) -> Evaluation:
        metrics = flat_metrics(report)
        if primary_metric not in metrics:
            raise BadInputError(f"no metric '{primary_metric}' in this evaluation (known: "
                                f"{', '.join(metrics)})")
        return cls(report, metrics, primary_metric)

    @property
    def score(self) -> float:
        """The primary metric; larger is better."""
        return self.metrics[self.primary_metric]


class Evaluator(Protocol):
    name: ClassVar[str]  # its name in EVALUATORS
    data: ClassVar[str]  # what it is made from: "dataset" (image-text), "sts", "classes"
    layouts: ClassVar[tuple[str, ...]]  # report tables (evaluation.report.LAYOUTS) it fills
    primary_metric: str

    def __call__(self, encoder: Encoder, progress: bool = True) -> Evaluation: ...


class ImageTextEvaluator:
    """Both cross-modal directions (i2t, t2i) of an image-caption set, under a protocol."""

    name, data = "image-text", "dataset"
    layouts = ("retrieval", "ranks", "newsimages")

    def __init__(self, dataset: RetrievalDataset, protocol: str = "full",
                 ks: Sequence[int] = KS_ALL, ties: str = "pessimistic",
                 primary_metric: str = "rsum"):
        self.dataset, self.protocol, self.ks, self.ties = dataset, protocol, ks, ties
        self.primary_metric = primary_metric

    def __call__(self, encoder: Encoder, progress: bool = True) -> Evaluation:
        report = evaluate_model(encoder, self.dataset, self.protocol, self.ks, self.ties,
                                progress)
        return Evaluation.of(report, self.primary_metric)

    @staticmethod
    def on_embeddings(image_emb: np.ndarray, text_emb: np.ndarray,
                      text_images: Sequence[Sequence[int]],
                      primary_metric: str = "rsum") -> Evaluation:
        """The same metrics on embeddings made elsewhere (training's cached features)."""
        return Evaluation.of(evaluate_pairs(image_emb, text_emb, text_images), primary_metric)

    @staticmethod
    def selectable_metrics() -> list[str]:
        """What may select a training checkpoint: rsum, or a larger-is-better metric of one
        direction ("text_to_image/R@1")."""
        keys = [f"R@{k}" for k in DEFAULT_KS] + ["MRR", "MeanR", "mAP@R", "R-P"]
        return ["rsum"] + [f"{direction}/{key}" for direction in ("image_to_text",
                                                                   "text_to_image")
                           for key in keys]


class _WithinEvaluator:
    """Retrieval within one modality, the query left out of its gallery."""

    name: ClassVar[str]
    data = "dataset"
    layouts = ("within",)

    def __init__(self, dataset: RetrievalDataset, protocol: str = "full",
                 ks: Sequence[int] = DEFAULT_KS, ties: str = "pessimistic",
                 primary_metric: str = "within/R@1"):
        if protocol != "full":
            raise BadInputError(f"{self.name} evaluates the whole set: protocol 'full', "
                                f"not '{protocol}'")
        self.dataset, self.ks, self.ties = dataset, ks, ties
        self.primary_metric = primary_metric

    def __call__(self, encoder: Encoder, progress: bool = True) -> Evaluation:
        report = evaluate_model_within(encoder, self.dataset, self.name, self.ks, self.ties,
                                       progress)
        return Evaluation.of(report, self.primary_metric)


class ImageImageEvaluator(_WithinEvaluator):
    """The other images of a class (an imagefolder set) are each image's positives."""

    name = "image-image"


class TextTextEvaluator(_WithinEvaluator):
    """The other captions of the same image are each caption's positives."""

    name = "text-text"


class StsEvaluator:
    """Sentence similarity of the text side: Spearman x 100 per set (and both cross-lingual
    crossings of two sets with the same rows); primary: the first set's Spearman."""

    name, data = "sts", "sts"
    layouts = ()

    def __init__(self, sets: Sequence[StsPairs], primary_metric: str | None = None):
        if not sets:
            raise BadInputError("STS needs at least one set of sentence pairs")
        self.sets = list(sets)
        self.primary_metric = primary_metric or f"{self.sets[0].name}/spearman"

    def __call__(self, encoder, progress: bool = True) -> Evaluation:
        """`encoder`: anything with encode_texts (an Encoder, or a text tower alone)."""
        rows = evaluate_sts_files(encoder.encode_texts, self.sets, progress)
        metrics = {f"{row['data']}/{key}": float(row[key]) for row in rows
                   for key in ("spearman", "pearson")}
        return Evaluation({"rows": rows}, metrics, self.primary_metric)


class ZeroShotEvaluator:
    """Classification of class folders from their label texts put in prompt templates."""

    name, data = "zero-shot", "classes"
    layouts = ()

    def __init__(self, folder: ClassFolder, templates: Sequence[str],
                 primary_metric: str = "top1"):
        self.folder, self.templates = folder, list(templates)
        self.primary_metric = primary_metric

    def __call__(self, encoder: Encoder, progress: bool = True) -> Evaluation:
        report = zero_shot_accuracy(encoder, self.folder, self.templates, progress)
        return Evaluation.of(report, self.primary_metric)


# name -> factory(data, **options) -> Evaluator
EVALUATORS: Registry[Callable[..., Evaluator]] = Registry("evaluator", "crossmodal.evaluators")
for _evaluator in (ImageTextEvaluator, ImageImageEvaluator, TextTextEvaluator, StsEvaluator,
                   ZeroShotEvaluator):
    EVALUATORS.register(_evaluator.name, _evaluator)

USE_INSTEAD = {"sts": "crossmodal eval-sts", "classes": "crossmodal classify"}


def dataset_evaluator(task: str, dataset: RetrievalDataset, **options) -> Evaluator:
    """The evaluator `task` names, made from an image-text dataset (`crossmodal eval`)."""
    if task not in EVALUATORS:
        raise BadInputError(f"unknown evaluation task '{task}' (known: "
                            f"{', '.join(EVALUATORS)})")
    factory = EVALUATORS[task]
    made_from = getattr(factory, "data", "dataset")
    if made_from != "dataset":
        raise BadInputError(f"task '{task}' is not evaluated on an image-text dataset"
                            + (f": use `{USE_INSTEAD[made_from]}`" if made_from in USE_INSTEAD
                               else ""))
    return factory(dataset, **options)
