"""Where-it-looks heat map: the cosine of a text query with each spatial cell of the image
tower's feature map, upsampled and laid over the image the model saw (IConE Fig. 10).

towers:* encoders project every cell of the EfficientNet feature map (before global pooling)
through the image head (`TowersEncoder.image_feature_map`); hf: CLIP-family models project
their vision transformer's patch tokens the same way as the pooled token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from crossmodal.data.dataset import ImageSource
from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.errors import BadInputError, UnknownModelError
from crossmodal.models.preprocess import images_to_tensor, resize_and_crop
from crossmodal.models.protocol import Encoder
from crossmodal.viz.figures import figure_png, pyplot

# hf: model types whose pooled image embedding is visual_projection(post_layernorm(CLS)).
PATCH_TOKEN_TYPES = ("clip", "chinese_clip", "altclip")


def _hf_patch_cells(encoder, image: Image.Image) -> np.ndarray:
    model = encoder.model
    pixels = images_to_tensor([image], encoder.preprocessing).contiguous().to(encoder.device)
    vision = model.vision_model
    with torch.inference_mode():
        tokens = vision(pixel_values=pixels).last_hidden_state[:, 1:]  # drop the class token
        cells = model.visual_projection(vision.post_layernorm(tokens))[0]
    side = math.isqrt(cells.shape[0])
    if side * side != cells.shape[0]:
        raise UnknownModelError(f"{encoder.model_id}: {cells.shape[0]} patch tokens are not a "
                                "square grid")
    return cells.reshape(side, side, -1).float().cpu().numpy()


def cell_embeddings(encoder: Encoder, image: Image.Image) -> np.ndarray:
    """(H, W, dim) unit vectors, one per spatial cell of the image tower, in the joint space."""
    if hasattr(encoder, "image_feature_map"):
        cells = encoder.image_feature_map([image])[0]
        cells = cells.float().cpu().numpy() if isinstance(cells, torch.Tensor) else cells
    elif getattr(encoder, "model_type", None) in PATCH_TOKEN_TYPES:
        cells = _hf_patch_cells(encoder, image)
    else:
        kind = getattr(encoder, "model_type", None) or type(encoder).__name__
        raise UnknownModelError(
            f"heat maps need the image tower's spatial features, which {encoder.model_id} "
            f"({kind}) does not expose: use a towers:* model (e.g. towers:lite-en) or an hf: "
            f"model of type {', '.join(PATCH_TOKEN_TYPES)}")
    cells = np.asarray(cells, np.float32)
    norms = np.linalg.norm(cells, axis=-1, keepdims=True)
    return cells / np.maximum(norms, 1e-12)


def similarity_map(cells: np.ndarray, text_vector: np.ndarray) -> np.ndarray:
    """(H, W) cosine of each cell with the text embedding."""
    if cells.ndim != 3 or cells.shape[-1] != text_vector.shape[-1]:
        raise BadInputError(f"cells {cells.shape} and text vector {text_vector.shape} differ "
                            "in dimension")
    text = text_vector / max(float(np.linalg.norm(text_vector)), 1e-12)
    return cells @ text.astype(np.float32)


def upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A coarse (H, W) map stretched to `size` = (width, height), bilinear."""
    image = Image.fromarray(np.asarray(grid, np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), np.float32)


def text_heatmaps(encoder: Encoder, image: Image.Image, texts: Sequence[str]
                  ) -> tuple[Image.Image, list[np.ndarray]]:
    """The model-input crop of `image` and one coarse (H, W) cosine map per text."""
    if not texts:
        raise BadInputError("give at least one text query for the heat map")
    cells = cell_embeddings(encoder, image)
    vectors = encoder.encode_texts(list(texts))
    crop = resize_and_crop(image, encoder.preprocessing)
    return crop, [similarity_map(cells, v) for v in vectors]


def heatmap_figure(crop: Image.Image, texts: Sequence[str], maps: Sequence[np.ndarray],
                   title: str = ""):
    plt = pyplot()
    figure, axes = plt.subplots(1, len(maps) + 1, figsize=(3.2 * (len(maps) + 1), 3.8),
                                squeeze=False)
    axes = axes[0]
    axes[0].imshow(crop)
    axes[0].set_title("image (model input)", fontsize=9)
    for ax, text, grid in zip(axes[1:], texts, maps, strict=True):
        dense = upsample(grid, crop.size)
        ax.imshow(crop)
        # Each map is scaled to its own range: where the text looks, not how strongly.
        shown = ax.imshow(dense, cmap="jet", alpha=0.5, vmin=float(grid.min()),
                          vmax=float(grid.max()))
        ax.set_title(f"“{_two_lines(text, 34)}”\ncos {grid.min():.2f} … {grid.max():.2f} "
                     f"({grid.shape[0]}×{grid.shape[1]} cells)", fontsize=9)
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _two_lines(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(" ".join(text.split()), width, max_lines=2,
                                   placeholder="…"))


def heatmap_png(encoder: Encoder, image: ImageSource | Image.Image, texts: Sequence[str],
                title: str = "") -> bytes:
    if not isinstance(image, Image.Image):
        where = "the image bytes" if isinstance(image, bytes) else str(image)
        try:
            image = load_image(image)
        except ImageLoadError as exc:
            raise BadInputError(f"cannot read {where}: {exc}") from exc
    crop, maps = text_heatmaps(encoder, image, texts)
    return figure_png(heatmap_figure(crop, texts, maps, title or encoder.model_id))
