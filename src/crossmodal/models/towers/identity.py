"""What names a tower's vectors and how its images are prepared, whichever runtime runs it:
read from the config and its weight files alone (no torch), so the ONNX Runtime path and
`crossmodal models` need not load PyTorch."""

from __future__ import annotations

import hashlib
import json

from crossmodal.errors import UnknownModelError
from crossmodal.models.protocol import ImagePreprocessing
from crossmodal.models.towers.config import ImageSpec, TowersConfig
from crossmodal.paths import file_sha256

# Test-time augmentation: "flip" embeds each image and its mirror image and averages them.
TTA_VIEWS = {"none": ("plain",), "flip": ("plain", "mirror")}


def preprocessing_of(config: TowersConfig) -> ImagePreprocessing:
    """The image preprocessing a tower config names (defaults: ImageSpec's, one place)."""
    img = ImageSpec.of(config.image)
    return ImagePreprocessing(size=img.size, mean=tuple(img.mean), std=tuple(img.std),
                              resize=img.resize, interpolation=img.interpolation)


def image_views_of(config: TowersConfig) -> tuple[str, ...]:
    tta = ImageSpec.of(config.image).tta
    if tta not in TTA_VIEWS:
        raise UnknownModelError(f"image 'tta' must be one of {sorted(TTA_VIEWS)}, not {tta!r}")
    return TTA_VIEWS[tta]


def _digest_of(path, absent: str, what: str) -> str:
    if path is None:
        return absent
    if not path.is_file():
        raise UnknownModelError(f"{what} not found at {path}: train them with `crossmodal "
                                "train` or fix the tower config that names them")
    return file_sha256(path)


def fingerprint_of(config: TowersConfig, weights_digest: str | None = None,
                   backbone_digest: str | None = None) -> str:
    """What names a tower's vectors (config and weight files), whichever runtime runs it;
    digests not given are read from the config's weight files."""
    if weights_digest is None:
        weights_digest = _digest_of(config.weights_path, "untrained", "tower head weights")
    if backbone_digest is None:
        backbone_digest = _digest_of(config.backbone_weights_path, "pretrained",
                                     "fine-tuned backbone weights")
    blob = json.dumps({"config": config.to_dict(), "weights": weights_digest,
                       "backbones": backbone_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
