"""Class-labelled image folders: one sub-folder of images per class (torchvision's
ImageFolder layout, and `classify`'s)."""

from __future__ import annotations

from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.images import is_image_path
from crossmodal.errors import BadInputError


def class_folders(root: Path) -> tuple[list[str], list[tuple[str, Path, int]]]:
    """(class folder names, sorted; (image id, path, class index) of every image)."""
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"not a folder: {root} (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise BadInputError(f"{root} needs at least two class sub-folders, found {len(classes)}")
    images = [(f"{name}/{path.relative_to(root / name)}", path.resolve(), index)
              for index, name in enumerate(classes)
              for path in sorted((root / name).rglob("*")) if is_image_path(path)]
    return classes, images


def load_imagefolder(root: str | Path) -> RetrievalDataset:
    """Each class is one text (its folder name, `_` as spaces) describing all its images: the
    positives of image->image retrieval are the other images of a class."""
    classes, images = class_folders(Path(root).expanduser())
    dataset = RetrievalDataset(f"imagefolder:{Path(root).name}")
    rows: list[list[int]] = [[] for _ in classes]
    for image_id, path, index in images:
        rows[index].append(dataset.add_image(image_id, path))
    for name, members in zip(classes, rows, strict=True):
        if members:
            dataset.add_text(name.replace("_", " "), tuple(members), name)
    return dataset
