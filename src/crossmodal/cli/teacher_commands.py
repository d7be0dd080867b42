"""`crossmodal teacher-features`: frozen teachers' features of a split, for CUSA training."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("teacher-features")
@click.option("--data", required=True,
              help="Dataset: 'flickr8k-cn:ROOT', a JSON/TOML dataset spec file, or "
                   "FORMAT:PATH (see README, Datasets).")
@click.option("--split", default=None, help="Split (default: the spec's).")
@click.option("--language", default=None, help="Caption language (en, zh).")
@click.option("--image-teacher", default=None,
              help="Image teacher: effnet:efficientnet-lite0|1|2, or a model id "
                   "(towers:lite-en, hf:...).")
@click.option("--text-teacher", default=None,
              help="Text teacher: st:FOLDER or st:package:NAME/sub (sentence-transformers), "
                   "or a model id.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the features (default: the cache's teachers/ folder; the "
                   "shared data folder is read-only, so nothing goes beside the data unless "
                   "--out says so).")
@click.option("--name", default=None,
              help="File stem (default: dataset name + teacher specs).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def teacher_features_command(data: str, split: str | None, language: str | None,
                             image_teacher: str | None, text_teacher: str | None,
                             out: Path | None, name: str | None, quiet: bool) -> None:
    """Compute teacher features of a dataset split once: NAME.images.npy, NAME.texts.npy
    (float32, L2-normalised, dataset order) and NAME.ids.json, for `crossmodal train`."""
    from crossmodal.data.registry import load_dataset
    from crossmodal.errors import BadInputError
    from crossmodal.paths import cache_dir
    from crossmodal.train.teachers import compute_teacher_features, default_feature_name

    if not image_teacher and not text_teacher:
        raise BadInputError("give --image-teacher, --text-teacher, or both")
    overrides = {k: v for k, v in (("split", split), ("language", language)) if v}
    dataset = load_dataset(data, **overrides)
    out = out if out is not None else cache_dir("teachers")
    name = name or default_feature_name(dataset.name, image_teacher, text_teacher)
    written = compute_teacher_features(image_teacher, text_teacher, dataset, out, name,
                                       progress=not quiet)
    failed = json.loads(written["ids"].read_text(encoding="utf-8"))["failed_images"]
    if failed:
        click.echo(f"{len(failed)} unreadable images have zero rows (listed under "
                   f"failed_images in {written['ids']})", err=True)
    click.echo(json.dumps({"dataset": dataset.name, "images": len(dataset.image_ids),
                           "texts": len(dataset.texts), "dir": str(out), "name": name,
                           "files": {k: str(v) for k, v in written.items()}}, indent=1,
                          ensure_ascii=False))


COMMANDS = [teacher_features_command]
