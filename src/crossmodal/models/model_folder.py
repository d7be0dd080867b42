"""A model folder: a directory holding `crossmodal-model.json`, which names the model it holds
by an ordinary id whose paths are relative to the folder, e.g. {"model": "towers:tower.json"}
or {"model": "hf:hf"}. `crossmodal finetune` writes such folders; every command takes one as
`--model DIR`. A fine-tuned fusion names its members the same way, e.g.
{"model": "fusion:1.0*towers:members/1-lite-en/tower.json+1.0*towers:members/2-lite-zh/tower.json"}.
The folder's absolute path is the model id that indexes record, so an index
built from it reopens from any working directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossmodal.errors import UnknownModelError

MODEL_FILE = "crossmodal-model.json"
# Prefixes whose name is a path that a model file may give relative to its folder.
PATH_PREFIXES = ("towers", "hf", "onnx")


def is_model_folder(model_id: str) -> bool:
    try:
        return (Path(model_id).expanduser() / MODEL_FILE).is_file()
    except (OSError, ValueError):  # a name too long or odd for the file system: not a folder
        return False


def read_model_folder(folder: str | Path) -> tuple[str, str]:
    """(the inner model id with absolute paths, the folder's canonical id: its absolute path)."""
    root = Path(folder).expanduser().resolve()
    path = root / MODEL_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        inner = record["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnknownModelError(f"{path}: unreadable model file ({exc}); expected "
                                '{"model": "towers:tower.json"} or similar') from exc
    if not isinstance(inner, str) or ":" not in inner:
        raise UnknownModelError(f"{path}: 'model' must be a model id such as towers:tower.json")
    return _absolute(inner, root), str(root)


def _absolute(model_id: str, root: Path) -> str:
    """The id with a path relative to the folder made absolute; in a fusion of members
    (`fusion:W*towers:a/tower.json+W*towers:b/tower.json`, what a fine-tuned fusion holds)
    each member's."""
    prefix, _, name = model_id.partition(":")
    if prefix == "fusion" and "+" in name:
        parts = []
        for part in name.split("+"):
            weight, star, member = part.rpartition("*")
            parts.append(f"{weight}{star}{_absolute(member, root)}")
        return "fusion:" + "+".join(parts)
    if prefix in PATH_PREFIXES and not Path(name).is_absolute() and (root / name).exists():
        name = str(root / name)
    return f"{prefix}:{name}"
