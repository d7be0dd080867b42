"""One entry point for every dataset reader: `load_dataset(spec)`.

A spec is one of
  * a dict naming the format and the reader's arguments by name:
        {"format": "karpathy", "path": "dataset_coco.json", "image_root": "coco", "split": "test"}
    "path" stands for the reader's first argument (here `json_path`);
  * a string shorthand FORMAT:ARG:ARG..., the arguments in the reader's order, an empty one
    left at its default: "flickr8k-cn:data/flickr8k-cn:test:zh", "chinese-clip:muge:valid";
  * the path of a `.json` or `.toml` file holding such a dict; relative paths in it are
    taken from the file's folder.
Formats (see each module's docstring): flickr8k-cn, karpathy, albef, chinese-clip, coco,
table, newsimages, imagefolder, folder (photos with sidecar captions).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from crossmodal.config_files import read_config_file
from crossmodal.data.albef import load_albef
from crossmodal.data.captioned_folder import load_captioned_folder
from crossmodal.data.chinese_clip import load_chinese_clip
from crossmodal.data.coco import load_coco_captions
from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.imagefolder import load_imagefolder
from crossmodal.data.karpathy import load_karpathy
from crossmodal.data.newsimages import load_newsimages
from crossmodal.data.table import load_table
from crossmodal.errors import BadInputError
from crossmodal.registry import Registry


class DatasetFormat(NamedTuple):
    """A reader (keyword arguments in, a RetrievalDataset out) and which of its arguments
    are paths (taken from a config file's folder when relative)."""

    reader: Callable[..., RetrievalDataset]
    path_params: tuple[str, ...] = ()


# A plugin adds a DatasetFormat under its name through the entry-point group
# `crossmodal.formats`.
FORMATS: Registry[DatasetFormat] = Registry("dataset format", "crossmodal.formats")
FORMATS["flickr8k-cn"] = DatasetFormat(load_flickr8k_cn, ("root",))
FORMATS["karpathy"] = DatasetFormat(load_karpathy, ("json_path", "image_root"))
FORMATS["albef"] = DatasetFormat(load_albef, ("json_path", "image_root"))
FORMATS["chinese-clip"] = DatasetFormat(load_chinese_clip, ("folder",))
FORMATS["coco"] = DatasetFormat(load_coco_captions, ("annotation_json", "image_root"))
FORMATS["table"] = DatasetFormat(load_table, ("path", "image_root"))
FORMATS["newsimages"] = DatasetFormat(load_newsimages, ("path", "image_root"))
FORMATS["imagefolder"] = DatasetFormat(load_imagefolder, ("root",))
FORMATS["folder"] = DatasetFormat(load_captioned_folder, ("root",))


def _reader(name: object) -> tuple[Callable[..., RetrievalDataset], tuple[str, ...], str]:
    key = str(name).strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise BadInputError(f"unknown dataset format {str(name)!r} "
                            f"(known: {', '.join(FORMATS)})")
    return *FORMATS[key], key


def _shorthand(spec: str) -> dict[str, object]:
    name, _, rest = spec.partition(":")
    reader, _, key = _reader(name)
    params = list(inspect.signature(reader).parameters)
    args = rest.split(":") if rest else []
    if len(args) > len(params):
        raise BadInputError(f"dataset spec {spec!r}: '{key}' takes at most {len(params)} "
                            f"arguments ({':'.join(p.upper() for p in params)}), got {len(args)}")
    return {"format": key} | {p: a for p, a in zip(params, args, strict=False) if a}


def _call(spec: dict, where: str, base: Path | None) -> RetrievalDataset:
    if "format" not in spec:
        raise BadInputError(f"{where}: expected a 'format' ({', '.join(FORMATS)}), "
                            f"got keys {sorted(spec)}")
    reader, path_params, key = _reader(spec["format"])
    signature = inspect.signature(reader)
    params = list(signature.parameters)
    kwargs = {k: v for k, v in spec.items() if k != "format"}
    if "path" in kwargs and "path" not in params:
        if params[0] in kwargs:
            raise BadInputError(f"{where}: give 'path' or '{params[0]}', not both")
        kwargs[params[0]] = kwargs.pop("path")
    unknown = sorted(set(kwargs) - set(params))
    missing = [name for name, p in signature.parameters.items()
               if p.default is inspect.Parameter.empty and name not in kwargs]
    if unknown or missing:
        problem = f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise BadInputError(f"{where}: format '{key}' takes {', '.join(params)} ({problem})")
    for name, value in kwargs.items():
        if value is not None and not isinstance(value, str):
            raise BadInputError(f"{where}: expected '{name}' to be a string, got {value!r}")
        if name in path_params and value is not None:
            path = Path(value).expanduser()
            kwargs[name] = base / path if base is not None and not path.is_absolute() else path
    return reader(**kwargs)


def load_dataset(spec: str | Path | dict, **overrides: str) -> RetrievalDataset:
    """The dataset a spec names: a dict, a FORMAT:ARG... string, or a .json/.toml config.

    `overrides` (e.g. split="val", language="zh" from the command line) replace the spec's
    arguments of the same name; a reader without such an argument refuses them.
    """
    where, base = "dataset spec", None
    if isinstance(spec, dict):
        config = dict(spec)
    else:
        text = str(spec)
        if isinstance(spec, Path) or text.lower().endswith((".json", ".toml")):
            path = Path(text).expanduser()
            config = read_config_file(path, "dataset config")
            if not isinstance(config, dict):
                raise BadInputError(f"{path}: expected an object with 'format' and its arguments")
            where, base = str(path), path.parent
        elif ":" not in text:
            raise BadInputError(f"dataset spec {text!r}: expected FORMAT:ARG..., a dict, or a "
                                f".json/.toml config (formats: {', '.join(FORMATS)})")
        else:
            config, where = _shorthand(text), f"dataset spec {text!r}"
    return _call({**config, **overrides}, where, base)
