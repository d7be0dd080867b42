"""Image and embedding helpers shared by all backends (PIL + numpy, no torchvision)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from crossmodal.models.onnx.tokens import tokenize  # noqa: F401 - where graphs finds it
from crossmodal.models.protocol import ImagePreprocessing

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


# An image longer than this many times its short side is cut (crop mode) or shrunk along
# its long side (squash mode) first: resizing it whole would allocate size x long side,
# gigabytes for a 20000x2 PNG. Photos never come near, so their pixels are unchanged.
_MAX_RESIZE_ASPECT = 8


def resize_and_crop(image: Image.Image, prep: ImagePreprocessing) -> Image.Image:
    """The model's input: `prep.size` square, by squashing or by resizing the short side to
    it and taking the centre; what it allocates is bounded whatever the image's shape."""
    image = _bounded_aspect(image, prep.resize == "squash", prep.size)
    image = image.convert("RGB")
    resample = _RESAMPLE[prep.interpolation]
    size = prep.size
    if prep.resize == "squash":
        return image.resize((size, size), resample) if image.size != (size, size) else image
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if (new_w, new_h) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return image


def _bounded_aspect(image: Image.Image, squash: bool, size: int) -> Image.Image:
    """`image` with its long side at most _MAX_RESIZE_ASPECT x its short side (crop mode:
    the centre, which holds the crop; squash: averaged down along the long side), or at most
    _MAX_RESIZE_ASPECT x `size` long when squashing."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if squash:
        factor = long // (_MAX_RESIZE_ASPECT * max(size, 1))
        if factor < 2:
            return image
        return image.convert("RGB").reduce((factor, 1) if width > height else (1, factor))
    keep = _MAX_RESIZE_ASPECT * max(short, 1)
    if long <= keep:
        return image
    cut = (long - keep) // 2
    return image.crop((cut, 0, cut + keep, height) if width > height
                      else (0, cut, width, cut + keep))


def images_to_tensor(images: Sequence[Image.Image], prep: ImagePreprocessing) -> torch.Tensor:
    """A normalised NCHW float32 batch in channels-last memory (faster convolutions on CPU)."""
    array = np.stack([np.asarray(resize_and_crop(im, prep), dtype=np.uint8) for im in images])
    batch = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return ((batch - mean) / std).contiguous(memory_format=torch.channels_last)


def l2_normalize(vectors: torch.Tensor | np.ndarray) -> np.ndarray:
    """float32 rows of unit length; zero rows stay zero instead of becoming NaN."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().float().cpu().numpy()
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def features_tensor(output: object) -> torch.Tensor:
    """transformers 5 returns output objects from get_*_features; older versions a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find embeddings in model output of type {type(output).__name__}")
