"""Evaluate one model on one dataset: embeddings (cached) -> metrics report."""

from __future__ import annotations

from collections.abc import Sequence

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import NonFiniteError
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.metrics.evaluate import evaluate
from crossmodal.metrics.ranks import require_finite
from crossmodal.metrics.retrieval import DEFAULT_KS
from crossmodal.models.protocol import Encoder

KS_ALL = (1, 5, 10, 20, 50, 100)  # covers both the IConE/CE-CLIP and the NewsImages layouts


def evaluate_model(encoder: Encoder, dataset: RetrievalDataset, protocol: str = "full",
                   ks: Sequence[int] = KS_ALL, ties: str = "pessimistic",
                   progress: bool = True) -> dict:
    embeddings = embed_dataset(encoder, dataset, progress=progress)
    image_emb, text_emb, positives = embeddings.images, embeddings.texts, dataset.text_images
    if embeddings.failed_images:
        # Unreadable images leave the evaluation (with captions that only they had); the
        # report lists them.
        failed = {row for row, _ in embeddings.failed_images}
        keep = [row for row in range(len(dataset.images)) if row not in failed]
        texts, positives = dataset.restrict(keep)
        image_emb, text_emb = image_emb[keep], text_emb[texts]
    try:  # before ranking: NaN compares False with everything and would rank first
        require_finite(image=image_emb, text=text_emb)
    except NonFiniteError as exc:
        raise NonFiniteError(f"{encoder.model_id} on {dataset.name}: {exc}") from None
    ks = tuple(sorted(set(ks) | set(DEFAULT_KS)))
    report = evaluate(image_emb, text_emb, positives, protocol, ks, ties)
    report.update(
        model=encoder.model_id, dataset=dataset.name, cached_embeddings=embeddings.cached,
        skipped_images=[{"image": dataset.image_ids[r], "reason": why}
                        for r, why in embeddings.failed_images],
    )
    return report
