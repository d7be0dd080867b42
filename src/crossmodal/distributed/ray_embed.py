"""Embed a shard plan across a Ray cluster with Ray Data, writing the clip-retrieval layout.

Each Ray Data actor loads the encoder once and embeds whole shards (one shard per batch).
Ray restarts an actor whose process dies and retries its shard; shards already on disk are
left out before anything starts, so a rerun after a driver crash embeds only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.distributed.clip_layout import RUN_FILE, remove_stale_temps, shard_files
from crossmodal.distributed.inputs import ShardPlan, ShardSpec
from crossmodal.errors import BadInputError, CrossmodalError, missing_dependency
from crossmodal.models.registry import split_model_id
from crossmodal.storage import atomic_save_json

LOCAL = "local"


@dataclass
class EmbedReport:
    out: Path
    shards: int = 0
    already_done: int = 0
    computed: int = 0
    rows: int = 0
    workers: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # found while planning
    skipped_captions: list[tuple[str, str]] = field(default_factory=list)  # (FILE:LINE, why)
    skipped_in_shards: int = 0


class ShardEmbedder:
    """A Ray Data callable class: one encoder per actor process, one shard per call."""

    def __init__(self, model_id: str, out: str, shard_count: int, batch_size: int):
        from crossmodal.models.registry import load_encoder
        from crossmodal.threads import THREADS_ENV, choose_threads

        if not os.environ.get(THREADS_ENV):
            choose_threads(1)  # each actor holds one CPU (num_cpus=1): actors share the cores
        self.encoder = load_encoder(model_id)
        self.out, self.shard_count, self.batch_size = out, shard_count, batch_size

    def __call__(self, batch: dict) -> dict:
        from crossmodal.distributed.shard_embed import embed_and_write

        results = [embed_and_write(ShardSpec.from_dict(json.loads(spec)), self.shard_count,
                                   self.out, self.encoder, self.batch_size)
                   for spec in batch["spec"]]
        return {key: [r[key] for r in results] for key in ("shard", "computed", "rows",
                                                           "skipped")} | {
            "pid": [os.getpid()] * len(results)}


def prepare_output(out: Path, model_id: str, plan: ShardPlan) -> None:
    """One output folder holds one plan of one model; a rerun must match it to resume."""
    run = {"format": "clip-retrieval", "dtype": "float16", "model": model_id,
           "plan": plan.fingerprint, "shards": len(plan.shards)}
    path = out / RUN_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if (old.get("model"), old.get("plan")) != (model_id, plan.fingerprint):
            raise BadInputError(
                f"{out} holds embeddings of other inputs or another model "
                f"({old.get('model')}, plan {old.get('plan')}; now {model_id}, plan "
                f"{plan.fingerprint}): choose a new output folder, or delete {out} to start over"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out} exists and is not a crossmodal embeddings folder: "
                            "choose a new output folder")
    atomic_save_json(path, run)


def connect(address: str | None, workers: int | None) -> tuple[bool, int]:
    """Join (or start) a Ray cluster; (whether we started it, how many actors to use)."""
    try:
        import ray
    except ImportError:
        raise missing_dependency("ray", "ray") from None
    started = False
    if not ray.is_initialized():
        if address in (None, LOCAL):
            ray.init(address="local", num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     logging_level=logging.WARNING)
        else:
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise BadInputError(f"cannot reach the Ray cluster at '{address}': {exc}; "
                                    "start one with `ray start --head`, or use --ray local"
                                    ) from None
        started = True
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return started, max(1, min(workers or cpus, cpus))


def embed_plan(plan: ShardPlan, out: str | Path, model_id: str, address: str | None = LOCAL,
               workers: int | None = None, batch_size: int = 32,
               progress: bool = True) -> EmbedReport:
    """Embed every shard of the plan not yet in `out`; returns what was done."""
    split_model_id(model_id)  # an unknown model fails here, not in every worker
    out = Path(out).resolve()
    prepare_output(out, model_id, plan)
    remove_stale_temps(out)
    count = len(plan.shards)
    todo = [s for s in plan.shards if not shard_files(out, s.index, count).done()]
    report = EmbedReport(out, shards=count, already_done=count - len(todo),
                         skipped=list(plan.skipped),
                         skipped_captions=list(plan.skipped_captions))
    if not todo:
        return report
    start = time.perf_counter()
    started, report.workers = connect(address, workers)
    import ray
    import ray.data

    try:
        ray.data.DataContext.get_current().enable_progress_bars = progress
        if not progress:  # quiet also means no per-dataset execution log lines
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        dataset = ray.data.from_items(
            [{"spec": json.dumps(s.to_dict(), ensure_ascii=False)} for s in todo],
            override_num_blocks=len(todo),
        )
        results = dataset.map_batches(
            ShardEmbedder, batch_size=1, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=min(report.workers, len(todo))),
            fn_constructor_kwargs={"model_id": model_id, "out": str(out),
                                   "shard_count": count, "batch_size": batch_size},
        )
        for row in results.iter_rows():
            report.computed += int(row["computed"])
            report.rows += max(int(row["rows"]), 0)
            report.skipped_in_shards += int(row["skipped"])
    except ray.exceptions.RayError as exc:
        raise CrossmodalError(f"distributed embedding failed: {exc}; shards written so far "
                              f"are kept in {out} and a rerun resumes from them") from exc
    finally:
        if started:
            ray.shutdown()
    report.seconds = time.perf_counter() - start
    return report
