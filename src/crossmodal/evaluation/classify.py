"""Zero-shot classification from label texts (CE-CLIP's dataset classifier, CLIP's prompts).

Each class is the normalised mean of its label put in every prompt template; an image takes
the class whose vector is most similar. Folder layout: one sub-folder of images per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.imagefolder import class_folders
from crossmodal.errors import BadInputError
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.models.preprocess import l2_normalize
from crossmodal.models.protocol import Encoder

TEMPLATES = {
    "en": ["a photo of a {}.", "a picture of a {}.", "a photo of the {}.",
           "a close-up photo of a {}.", "a bright photo of a {}.", "a photo of a small {}.",
           "a photo of a large {}."],
    "zh": ["一张{}的照片。", "一张{}的图片。", "{}的照片。", "一张清晰的{}的照片。",
           "一张小{}的照片。", "一张大{}的照片。"],
}


@dataclass
class ClassFolder:
    classes: list[str]  # folder names
    labels: list[str]  # label text of each class
    dataset: RetrievalDataset  # images only; texts unused
    targets: np.ndarray  # class index of each image


def read_labels(path: Path, classes: list[str]) -> list[str]:
    """`folder<TAB>label` lines, or one label a line in sorted folder order."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if all("\t" in ln for ln in lines):
        mapping = dict(ln.split("\t", 1) for ln in lines)
        missing = [c for c in classes if c not in mapping]
        if missing:
            raise BadInputError(f"{path}: no label for class folders {missing[:5]}")
        return [mapping[c].strip() for c in classes]
    if len(lines) != len(classes):
        raise BadInputError(f"{path} has {len(lines)} labels for {len(classes)} class folders: "
                            "give one per folder, or 'folder<TAB>label' lines")
    return [ln.strip() for ln in lines]


def read_class_folder(root: Path, labels_file: Path | None = None) -> ClassFolder:
    classes, images = class_folders(Path(root))
    labels = read_labels(labels_file, classes) if labels_file else [
        c.replace("_", " ") for c in classes]
    dataset = RetrievalDataset(f"classes:{Path(root).name}")
    for image_id, path, _ in images:
        dataset.add_image(image_id, path)
    dataset.add_text(labels[0], 0)  # the dataset embedder wants a text; unused here
    return ClassFolder(classes, labels, dataset, np.array([i for *_, i in images], np.int64))


def read_templates(path: Path) -> list[str]:
    templates = [t.strip() for t in Path(path).read_text(encoding="utf-8").splitlines()
                 if t.strip()]
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise BadInputError(f"{path}: every template needs a '{{}}' for the label: {bad[:3]}")
    return templates


def class_vectors(encoder: Encoder, labels: list[str], templates: list[str]) -> np.ndarray:
    prompts = [t.format(label) for label in labels for t in templates]
    vectors = encoder.encode_texts(prompts).reshape(len(labels), len(templates), -1)
    return l2_normalize(vectors.mean(1))


def zero_shot_accuracy(encoder: Encoder, folder: ClassFolder, templates: list[str],
                       progress: bool = True) -> dict:
    embeddings = embed_dataset(encoder, folder.dataset, progress=progress)
    failed = {row for row, _ in embeddings.failed_images}
    keep = np.array([r for r in range(len(folder.targets)) if r not in failed], np.int64)
    scores = embeddings.images[keep] @ class_vectors(encoder, folder.labels, templates).T
    order = np.argsort(-scores, axis=1)
    targets = folder.targets[keep]
    top5 = min(5, len(folder.classes))
    per_class = {
        folder.classes[c]: float(100 * np.mean(order[targets == c, 0] == c))
        for c in range(len(folder.classes)) if np.any(targets == c)
    }
    return {
        "model": encoder.model_id, "dataset": folder.dataset.name, "images": int(len(keep)),
        "classes": len(folder.classes), "templates": len(templates),
        "top1": float(100 * np.mean(order[:, 0] == targets)),
        f"top{top5}": float(100 * np.mean((order[:, :top5] == targets[:, None]).any(1))),
        "per_class_top1": per_class,
        "skipped_images": [folder.dataset.image_ids[r] for r, _ in embeddings.failed_images],
    }
