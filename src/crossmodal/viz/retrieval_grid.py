"""Retrieval grids: for sample queries, the top-k images with a green (correct) or red (wrong)
frame, or the top-k captions in green or red text (IConE Fig. 6-9)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from crossmodal.data.dataset import ImageSource, RetrievalDataset
from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.errors import BadInputError
from crossmodal.evaluation.embed import DatasetEmbeddings
from crossmodal.viz.figures import CORRECT, WRONG, figure_png, pyplot, sample_groups, shorten

DIRECTIONS = ("text-to-image", "image-to-text")
THUMBNAIL = 160


def result_colours(ranked: Sequence[int], positives: Collection[int]) -> list[str]:
    """The frame or text colour of each ranked result: green when the ground truth pairs it
    with the query, red otherwise."""
    truth = set(positives)
    return [CORRECT if int(item) in truth else WRONG for item in ranked]


@dataclass
class GridRow:
    query: str | ImageSource  # a caption (text->image) or an image (image->text)
    results: list  # image sources (text->image) or captions (image->text), best first
    colours: list[str]
    first_correct: int  # 1-based rank of the best ground-truth result over the whole dataset


def top_k(scores: np.ndarray, k: int) -> list[int]:
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in best[np.argsort(-scores[best], kind="stable")]]


def first_correct_rank(scores: np.ndarray, positives: Collection[int]) -> int:
    """1-based rank of the best-scored positive (ties pessimistic, as in the metrics)."""
    best = max(scores[list(positives)])
    return int(np.sum(scores >= best) - np.sum(scores[list(positives)] >= best) + 1)


def pick_queries(dataset: RetrievalDataset, direction: str, count: int, seed: int = 0
                 ) -> list[int]:
    """Query rows: image rows (image->text), or the first caption of sampled images."""
    rows = sample_groups(dataset, count, seed)
    if direction == "image-to-text":
        return rows
    first_caption = {}
    for text, images in enumerate(dataset.text_images):
        for image in images:
            first_caption.setdefault(image, text)
    return [first_caption[row] for row in rows]


def grid_rows(dataset: RetrievalDataset, embeddings: DatasetEmbeddings, direction: str,
              queries: Sequence[int], k: int = 5) -> list[GridRow]:
    """Rank the whole dataset for each query and mark each of the top `k` right or wrong."""
    if direction not in DIRECTIONS:
        raise BadInputError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction}")
    unreadable = sorted({row for row, _ in embeddings.failed_images})
    rows = []
    if direction == "text-to-image":
        scores = embeddings.texts[list(queries)] @ embeddings.images.T
        scores[:, unreadable] = -np.inf
        for query, row_scores in zip(queries, scores, strict=True):
            ranked = top_k(row_scores, k)
            positives = dataset.text_images[query]
            rows.append(GridRow(dataset.texts[query], [dataset.images[r] for r in ranked],
                                result_colours(ranked, positives),
                                first_correct_rank(row_scores, positives)))
    else:
        image_texts = dataset.image_texts()
        queries = [q for q in queries if q not in unreadable]  # no vector to query with
        scores = embeddings.images[list(queries)] @ embeddings.texts.T
        for query, row_scores in zip(queries, scores, strict=True):
            ranked = top_k(row_scores, k)
            positives = image_texts[query]
            rows.append(GridRow(dataset.images[query], [dataset.texts[t] for t in ranked],
                                result_colours(ranked, positives),
                                first_correct_rank(row_scores, positives)))
    return rows


def thumbnail(source: ImageSource, size: int = THUMBNAIL) -> Image.Image:
    """A square centre crop; an unreadable image becomes a grey tile rather than a crash."""
    try:
        image = load_image(source, target_size=size)
    except ImageLoadError:
        return Image.new("RGB", (size, size), (160, 160, 160))
    return ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)


def _frame(ax, colour: str, width: float = 5.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def text_to_image_figure(rows: Sequence[GridRow], title: str = ""):
    plt = pyplot()
    k = max(len(r.results) for r in rows)
    figure, axes = plt.subplots(len(rows), k + 1, squeeze=False,
                                figsize=(2.0 * k + 3.2, 2.1 * len(rows)),
                                gridspec_kw={"width_ratios": [1.3] + [1] * k})
    for ax_row, row in zip(axes, rows, strict=True):
        ax_row[0].axis("off")
        ax_row[0].text(0.0, 0.5, _wrap(str(row.query), 26) + f"\n\n(first correct: "
                       f"#{row.first_correct})", va="center", ha="left", fontsize=9,
                       transform=ax_row[0].transAxes)
        for rank, ax in enumerate(ax_row[1:]):
            if rank >= len(row.results):
                ax.axis("off")
                continue
            ax.imshow(thumbnail(row.results[rank]))
            _frame(ax, row.colours[rank])
            ax.set_title(f"#{rank + 1}", fontsize=8)
    figure.suptitle(title or "text → image: top results (green = ground truth, red = not)")
    figure.tight_layout()
    return figure


def image_to_text_figure(rows: Sequence[GridRow], title: str = ""):
    plt = pyplot()
    figure, axes = plt.subplots(len(rows), 2, squeeze=False, figsize=(9.5, 2.1 * len(rows)),
                                gridspec_kw={"width_ratios": [1, 3.6]})
    for (image_ax, text_ax), row in zip(axes, rows, strict=True):
        image_ax.imshow(thumbnail(row.query))
        _frame(image_ax, "black", 1.0)
        image_ax.set_xlabel(f"first correct: #{row.first_correct}", fontsize=8)
        text_ax.axis("off")
        count = len(row.results)
        for rank, (caption, colour) in enumerate(zip(row.results, row.colours, strict=True)):
            text_ax.text(0.0, 1 - (rank + 0.5) / max(count, 1),
                         f"#{rank + 1}  {shorten(caption, 80)}", color=colour, fontsize=9,
                         va="center", ha="left", transform=text_ax.transAxes,
                         fontweight="bold" if colour == CORRECT else "normal")
    figure.suptitle(title or "image → text: top captions (green = ground truth, red = not)")
    figure.tight_layout()
    return figure


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(" ".join(text.split()), width, max_lines=5,
                                   placeholder=" …"))


def retrieval_grid_png(dataset: RetrievalDataset, embeddings: DatasetEmbeddings,
                       direction: str, queries: int = 4, k: int = 5, seed: int = 0,
                       title: str = "") -> bytes:
    """The grid for `queries` sample queries drawn with `seed`, ranked over all of `dataset`."""
    rows = grid_rows(dataset, embeddings, direction,
                     pick_queries(dataset, direction, queries, seed), k)
    draw = text_to_image_figure if direction == "text-to-image" else image_to_text_figure
    return figure_png(draw(rows, title))
