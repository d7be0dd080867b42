"""Embedding map: images and captions of a few image groups in 2-D (t-SNE, or UMAP when the
`umap` package is installed), coloured by group, marker by modality; one panel per model, so a
pretrained and a fine-tuned model sit side by side (IConE Fig. 4-5)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError, missing_dependency
from crossmodal.evaluation.embed import DatasetEmbeddings, embed_dataset
from crossmodal.models.protocol import Encoder
from crossmodal.viz.figures import figure_png, pyplot


@dataclass
class MapPanel:
    """One model's embeddings of the same groups: `text_groups[t]` is the image row of text t."""

    title: str
    images: np.ndarray  # (n_groups, dim)
    texts: np.ndarray  # (n_texts, dim)
    text_groups: np.ndarray  # (n_texts,) int

    def recall_at_1(self) -> tuple[float, float]:
        """(image->text, text->image) R@1 in %, within this subset: how well groups separate."""
        scores = self.images @ self.texts.T
        i2t = np.mean(self.text_groups[scores.argmax(1)] == np.arange(len(self.images)))
        t2i = np.mean(scores.argmax(0) == self.text_groups)
        return float(100 * i2t), float(100 * t2i)


def available_methods() -> list[str]:
    methods = ["tsne"]
    if importlib.util.find_spec("umap") is not None:
        methods.append("umap")
    return methods


def project_2d(vectors: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(n, 2) coordinates of the rows of `vectors`; cosine neighbourhoods are kept."""
    n = len(vectors)
    if n < 3:
        raise BadInputError(f"a 2-D map needs at least 3 points, got {n}")
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
            from threadpoolctl import threadpool_limits
        except ImportError as exc:
            raise missing_dependency("scikit-learn", "viz") from exc
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
                    random_state=seed)
        # One OpenMP and BLAS thread: maps of a few hundred points gain nothing from more; on a
        # busy CPU spinning OpenMP workers made a 120-point map take 28 s instead of 1.3 s.
        with threadpool_limits(limits=1 if n < 5000 else None):
            return tsne.fit_transform(vectors.astype(np.float64)).astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise missing_dependency("umap-learn") from exc
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine",
                            random_state=seed)
        return np.asarray(reducer.fit_transform(vectors), np.float32)
    raise BadInputError(f"unknown projection '{method}' (available: "
                        f"{', '.join(available_methods())})")


def group_colours(count: int) -> list[tuple[float, float, float, float]]:
    plt = pyplot()
    cmap = plt.get_cmap("tab20" if count > 10 else "tab10")
    return [cmap(i % cmap.N) for i in range(count)]


def embedding_map_figure(panels: Sequence[MapPanel], method: str = "tsne", seed: int = 0):
    """A matplotlib figure with one map per panel; images and texts share each projection."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        points = project_2d(np.concatenate([panel.images, panel.texts]), method, seed)
        image_xy, text_xy = points[: len(panel.images)], points[len(panel.images):]
        colours = group_colours(len(panel.images))
        ax.scatter(text_xy[:, 0], text_xy[:, 1], marker="^", s=28, alpha=0.8,
                   c=[colours[g] for g in panel.text_groups], label="caption")
        ax.scatter(image_xy[:, 0], image_xy[:, 1], marker="o", s=90, edgecolors="black",
                   linewidths=1.2, c=colours, label="image")
        i2t, t2i = panel.recall_at_1()
        ax.set_title(f"{panel.title}\nR@1 within these {len(panel.images)} groups: "
                     f"i2t {i2t:.0f}%  t2i {t2i:.0f}%", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", color="grey", markeredgecolor="black",
                          linestyle="", markersize=8, label="image"),
               plt.Line2D([], [], marker="^", color="grey", linestyle="", markersize=6,
                          label="caption")]
    figure.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    name = {"tsne": "t-SNE", "umap": "UMAP"}.get(method, method)
    figure.suptitle(f"{name} of image and caption embeddings; colour = image group")
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure


def panel_from(title: str, dataset: RetrievalDataset, embeddings: DatasetEmbeddings,
               rows: Sequence[int] | None = None) -> MapPanel:
    """The panel of image `rows` (default all) and their captions; unreadable images are left
    out."""
    failed = {row for row, _ in embeddings.failed_images}
    keep = [r for r in (range(len(dataset.images)) if rows is None else rows) if r not in failed]
    if len(keep) < 2:
        raise BadInputError(f"fewer than 2 readable images to map in {dataset.name}")
    texts, positives = dataset.restrict(keep)
    return MapPanel(title, embeddings.images[keep], embeddings.texts[texts],
                    np.array([r[0] for r in positives], np.int64))


def embedding_map_png(encoders: Sequence[Encoder], dataset: RetrievalDataset,
                      method: str = "tsne", seed: int = 0, progress: bool = True) -> bytes:
    """Side-by-side maps of `dataset` (already cut to the groups to show), one per encoder."""
    panels = [panel_from(encoder.model_id, dataset, embed_dataset(encoder, dataset,
                                                                  progress=progress))
              for encoder in encoders]
    return figure_png(embedding_map_figure(panels, method, seed))
