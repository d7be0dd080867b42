"""What `crossmodal finetune` checks before any long work, each problem one clear line: the
base model can train, the output folder is free (or an interrupted run of the same settings),
and the data has enough usable, distinct pairs. Also the held-out part, drawn by image."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError
from crossmodal.paths import PACKAGE_DIR

MIN_PAIRS = 50  # fewer image-caption pairs than this teach the heads nothing measurable
MIN_VAL_IMAGES = 5
MODEL_FILE = "crossmodal-model.json"
RUN_FILE = "finetune-run.json"  # in OUT/train: the settings of the run in progress


def trainable_base(model_id: str) -> tuple[str, str]:
    """(prefix, name) of a base model `finetune` can train: towers: (a shipped name, a tower
    config, or a model folder holding one) and hf: CLIP / Chinese-CLIP; others refused."""
    from crossmodal.models.registry import split_model_id

    prefix, name = split_model_id(model_id)
    if prefix == "towers":
        from crossmodal.models.towers import find_tower_config

        find_tower_config(name)  # unknown names and missing configs fail here
        return prefix, name
    if prefix == "hf":
        from transformers import AutoConfig

        from crossmodal.train.hf_parts import TRAINABLE_TYPES

        try:
            kind = AutoConfig.from_pretrained(name).model_type
        except (OSError, ValueError) as exc:
            raise BadInputError(f"--from {model_id}: cannot read the model "
                                f"({str(exc).splitlines()[0][:160]})") from exc
        if kind not in TRAINABLE_TYPES:
            raise BadInputError(f"--from {model_id}: a {kind} model cannot be fine-tuned here; "
                                f"hf: models of type {', '.join(TRAINABLE_TYPES)} can")
        return prefix, name
    if prefix == "fusion":
        trainable_fusion(model_id, name)
        return prefix, name
    why = {"onnx": "an ONNX export holds no trainable weights; fine-tune the towers: or hf: "
                   "model it was exported from",
           "open_clip": "open_clip models cannot train here (no torchvision)"}
    raise BadInputError(f"--from {model_id}: {why.get(prefix, 'not a trainable model')} "
                        "(trainable: towers:NAME, a tower config, hf: CLIP / Chinese-CLIP, "
                        "a fusion of towers: such as the default fusion:bilingual)")


def trainable_fusion(model_id: str, name: str) -> None:
    """A fusion trains member by member: every member a towers: model, no projection (it was
    fitted to the members as they were)."""
    from crossmodal.models.fusion import read_fusion
    from crossmodal.models.registry import split_model_id
    from crossmodal.models.towers import find_tower_config

    config = read_fusion(name)
    if config.projection:
        raise BadInputError(f"--from {model_id}: a fusion with a projection cannot be "
                            "fine-tuned (the projection was fitted to the members as they were)")
    for member in config.members:
        prefix, tower = split_model_id(member.model)
        if prefix != "towers":
            raise BadInputError(f"--from {model_id}: member {member.model} is not a towers: "
                                "model; a fusion fine-tunes only towers: members")
        find_tower_config(tower)


def refuse_package_path(path: Path) -> None:
    """Trained weights never land inside the installed package (they would replace the
    shipped model for every index built with it)."""
    package = PACKAGE_DIR
    if Path(path).resolve().is_relative_to(package):
        raise BadInputError(f"{path} is inside the installed package ({package}): write "
                            "trained models to a folder of your own")


def prepare_out(out: Path, settings: dict, overwrite: bool, resume: bool) -> str:
    """"new", "resume" or "replace" (the caller deletes the folder once every other check
    has passed). A folder holding an interrupted run of the same settings resumes; a
    finished model, another run or foreign files are refused unless --overwrite (which
    replaces only a folder `finetune` made)."""
    out = Path(out)
    refuse_package_path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if resume:
            raise BadInputError(f"--resume: nothing to resume in {out}")
        return "new"
    if not out.is_dir():
        raise BadInputError(f"--out {out} is a file: give a folder to create")
    run_file = out / "train" / RUN_FILE
    ours = (out / MODEL_FILE).is_file() or run_file.is_file()
    if overwrite:
        if not ours:
            raise BadInputError(f"--out {out} holds files finetune did not write: refusing to "
                                "delete them with --overwrite; choose a new folder")
        return "replace"
    if (out / MODEL_FILE).is_file():
        raise BadInputError(f"--out {out} already holds a model: choose a new folder, or "
                            "--overwrite to replace it")
    if not run_file.is_file():
        raise BadInputError(f"--out {out} exists and is not empty: choose a new folder")
    before = json.loads(run_file.read_text(encoding="utf-8"))
    if before != settings:
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        raise BadInputError(f"--out {out} holds an interrupted run with other settings "
                            f"({', '.join(changed)}): rerun it as it was, or --overwrite")
    return "resume"


def check_pairs(data: RetrievalDataset, what: str) -> list[str]:
    """Refuses data that cannot fine-tune; returns notes on what was skipped."""
    missing = [w for w, why in data.skipped if why.startswith("image file missing")]
    empty = [w for w, why in data.skipped if why == "empty caption"]
    notes = []
    named = len(data) + len({why for _, why in data.skipped if why.startswith("image file")})
    if missing:
        share = f"{len(missing)} caption rows name missing image files"
        if len(data) < named / 2:
            raise BadInputError(f"{what}: most images are missing ({share}, "
                                f"{len(data)} images found; first: {missing[0]}): check the "
                                "image paths or the table's image root")
        notes.append(f"{what}: skipped {share} (first: {missing[0]})")
    if empty:
        notes.append(f"{what}: skipped {len(empty)} empty captions (first: {empty[0]})")
    if len(data.texts) < MIN_PAIRS:
        raise BadInputError(f"{what}: {len(data.texts)} image-caption pairs; fine-tuning needs "
                            f"at least {MIN_PAIRS} (a few hundred photos to gain much)")
    caption, count = Counter(data.texts).most_common(1)[0]
    if count > len(data.texts) / 2:
        raise BadInputError(f"{what}: {count} of {len(data.texts)} captions are the same "
                            f"({caption[:60]!r}): contrastive fine-tuning needs captions "
                            "that tell the photos apart")
    return notes


def hold_out(data: RetrievalDataset, fraction: float, seed: int
             ) -> tuple[RetrievalDataset, RetrievalDataset]:
    """(train, held-out) by image: `fraction` of the images (at least a fifth of a small set,
    up to 100 images) with all their captions, drawn with numpy's default_rng(seed)."""
    if not 0 < fraction < 1:
        raise BadInputError(f"--val-fraction must be between 0 and 1, not {fraction}")
    n = len(data)
    # At least a fifth of a small set (up to 100 images): a handful saturates R@1 at 100.
    count = max(MIN_VAL_IMAGES, round(n * fraction), min(100, n // 5))
    if n - count < MIN_VAL_IMAGES:
        raise BadInputError(f"{n} images are too few to hold {count} out for validation")
    chosen = np.random.default_rng(seed).permutation(n)
    val_rows, train_rows = sorted(chosen[:count].tolist()), sorted(chosen[count:].tolist())
    return (data.subset(train_rows, f"{data.name}/train"),
            data.subset(val_rows, f"{data.name}/held-out"))


def load_finetune_data(spec: str) -> RetrievalDataset:
    """Any dataset spec (`table:photos.csv`, `flickr8k-cn:ROOT:train:zh`, ...) or a folder of
    photos with sidecar captions; a bare table file (.csv/.tsv/.jsonl) reads as table:."""
    from crossmodal.data.captioned_folder import load_captioned_folder
    from crossmodal.data.registry import load_dataset
    from crossmodal.data.table import TABLE_SUFFIXES

    path = Path(spec).expanduser()
    if path.is_dir():
        return load_captioned_folder(path)
    if path.suffix.lower() in TABLE_SUFFIXES and path.is_file():
        return load_dataset(f"table:{path}")
    return load_dataset(spec)
