"""GET /api/duplicates: groups of exact copies and near-duplicates among the served images.

Finding them reads every image's nearest neighbours (crossmodal.collection.duplicates), so
an answer is kept for the generation and log position it was computed on: asking again
costs nothing until the index changes.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local models at runtime.

import threading
import time
from typing import Annotated

from fastapi import APIRouter, Query

from crossmodal.collection.duplicates import NEIGHBOURS, find_duplicates
from crossmodal.models.duplicate_thresholds import HASH_DISTANCE
from crossmodal.serve import schemas
from crossmodal.serve.routes import _Deps

KEPT_ANSWERS = 4  # answers kept (other thresholds or k), the oldest dropped first


def duplicate_routes(router: APIRouter, deps: _Deps) -> None:
    """Add GET /api/duplicates to the /api router."""
    live = deps.live
    answers: dict[tuple, schemas.Duplicates] = {}
    one_at_a_time = threading.Lock()  # two requests for the same answer compute it once

    @router.get("/duplicates", response_model=schemas.Duplicates, dependencies=deps.guarded)
    def duplicates(
        threshold: Annotated[float | None, Query(
            gt=0, le=1, description="Image-image cosine at or above which two photos are "
                                    "near-duplicates (default: the model's calibrated one).")
        ] = None,
        hash_distance: Annotated[int, Query(
            ge=-1, le=32, description="Perceptual hashes (any turn by 90 degrees) at most "
                                      "this many bits apart are copies too; -1: off.")
        ] = HASH_DISTANCE,
        k: Annotated[int, Query(ge=1, le=100, description="Nearest images compared per "
                                                          "image.")] = NEIGHBOURS,
    ) -> schemas.Duplicates:
        """Groups of exact copies (same file bytes) and near-duplicates among the index's
        images, the biggest first: resized, re-encoded or turned copies (close perceptual
        hashes), cropped or straightened ones (image vectors at or above the threshold)."""
        started = time.perf_counter()
        with one_at_a_time, live.reading() as collection:
            key = (id(collection), collection.stamp(), threshold, hash_distance, k)
            if key not in answers:
                report = find_duplicates(collection, threshold, k, hash_distance=hash_distance)
                answers[key] = _out(collection.manifest.model, report)
                while len(answers) > KEPT_ANSWERS:
                    answers.pop(next(iter(answers)))
            answer = answers[key]
        took = round((time.perf_counter() - started) * 1000, 3)
        return answer.model_copy(update={"took_ms": took})


def _out(model: str, report) -> schemas.Duplicates:  # noqa: ANN001 - a DuplicateReport
    groups = [schemas.DuplicateGroup(
        size=len(g.members), exact=g.exact,
        members=[schemas.DuplicateMember(id=m.id, bytes=m.bytes, similarity=m.similarity,
                                         copy_of=m.copy_of,
                                         thumbnail=f"/api/thumbnails/{m.id}")
                 for m in g.members]) for g in report.groups]
    return schemas.Duplicates(model=model, threshold=report.threshold,
                              hash_distance=report.hash_distance, items=report.items,
                              unhashed=report.unhashed, duplicates=report.duplicates,
                              groups=groups, took_ms=0.0)
