"""Evaluate one model on one dataset: embeddings (cached) -> metrics report."""

from __future__ import annotations

from collections.abc import Sequence

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError, NonFiniteError
from crossmodal.evaluation.embed import DatasetEmbeddings, embed_dataset
from crossmodal.metrics.evaluate import evaluate
from crossmodal.metrics.ranks import require_finite
from crossmodal.metrics.retrieval import DEFAULT_KS
from crossmodal.metrics.within import evaluate_within
from crossmodal.models.long_text import LongTextEncoder
from crossmodal.models.protocol import Encoder

KS_ALL = (1, 5, 10, 20, 50, 100)  # covers both the IConE/CE-CLIP and the NewsImages layouts
# image-text: both cross-modal directions; image-image: images of one class (the texts
# describing an image: an imagefolder class) are positives; text-text: captions of one image
TASKS = ("image-text", "image-image", "text-text")


def evaluate_model(encoder: Encoder, dataset: RetrievalDataset, protocol: str = "full",
                   ks: Sequence[int] = KS_ALL, ties: str = "pessimistic",
                   progress: bool = True) -> dict:
    embeddings = embed_dataset(encoder, dataset, progress=progress)
    image_emb, text_emb, positives = embeddings.images, embeddings.texts, dataset.text_images
    if embeddings.failed_images:
        # Unreadable images leave the evaluation (with captions that only they had); the
        # report lists them.
        keep = _readable_rows(embeddings)
        texts, positives = dataset.restrict(keep)
        image_emb, text_emb = image_emb[keep], text_emb[texts]
    try:  # before ranking: NaN compares False with everything and would rank first
        require_finite(image=image_emb, text=text_emb)
    except NonFiniteError as exc:
        raise NonFiniteError(f"{encoder.model_id} on {dataset.name}: {exc}") from None
    ks = tuple(sorted(set(ks) | set(DEFAULT_KS)))
    report = evaluate(image_emb, text_emb, positives, protocol, ks, ties)
    report.update(_provenance(encoder, dataset, embeddings))
    return report


def _readable_rows(embeddings: DatasetEmbeddings) -> list[int]:
    failed = {row for row, _ in embeddings.failed_images}
    return [row for row in range(len(embeddings.images)) if row not in failed]


def _provenance(encoder: Encoder, dataset: RetrievalDataset,
                embeddings: DatasetEmbeddings) -> dict:
    """What a report says about its run: model, data, cache, the images left out."""
    long_text = {"long_text": str(encoder.policy)} if isinstance(encoder, LongTextEncoder) else {}
    return {"model": encoder.model_id, "dataset": dataset.name, **long_text,
            "cached_embeddings": embeddings.cached,
            "skipped_images": [{"image": dataset.image_ids[r], "reason": why}
                               for r, why in embeddings.failed_images]}


def evaluate_model_within(encoder: Encoder, dataset: RetrievalDataset, task: str,
                          ks: Sequence[int] = DEFAULT_KS, ties: str = "pessimistic",
                          progress: bool = True) -> dict:
    """Uni-modal retrieval (CUSA's image->image and text->text columns), the query left out
    of its gallery, through the same rank metrics as the cross-modal directions."""
    if task not in TASKS[1:]:
        raise BadInputError(f"task must be one of {', '.join(TASKS)}, not '{task}'")
    embeddings = embed_dataset(encoder, dataset, progress=progress)
    if task == "text-text":
        vectors = embeddings.texts
        groups: list = [rows[0] for rows in dataset.text_images]
    else:
        keep = _readable_rows(embeddings)
        described = dataset.image_texts()
        # an image's group: the first text describing it (an imagefolder class); undescribed
        # images are groups of their own (negatives only)
        groups = [described[row][0] if described[row] else f"alone:{row}" for row in keep]
        vectors = embeddings.images[keep]
    try:
        report = evaluate_within(vectors, groups, ks, ties)
    except ValueError:
        needs = {"text-text": "images with several captions each",
                 "image-image": "a class-labelled set (imagefolder:ROOT)"}[task]
        raise BadInputError(f"{dataset.name}: no two items of one group to find each "
                            f"other: {task} needs {needs}") from None
    report.update(task=task, protocol="full", images=len(dataset.images),
                  texts=len(dataset.texts), **_provenance(encoder, dataset, embeddings))
    return report
