"""The evaluation report: its tables and pictures on one self-contained HTML page (see
`crossmodal.viz.pages`), so a report is one file that opens anywhere, offline."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.evaluation.report import describe, table_rows
from crossmodal.storage import atomic_write
from crossmodal.viz.pages import Picture, figure_html, html_table, page_html


@dataclass
class ReportPage:
    title: str
    reports: list[dict]  # evaluation reports (crossmodal.evaluation.run.evaluate_model)
    sections: list[tuple[str, str]]  # (heading, table layout of crossmodal.evaluation.report)
    pictures: list[Picture] = field(default_factory=list)


def render_report(page: ReportPage) -> str:
    parts = [f"<p>{html.escape(describe(page.reports))}</p>"]
    for heading, layout in page.sections:
        header, rows = table_rows(page.reports, layout)
        parts += [f"<h2>{html.escape(heading)}</h2>", html_table(header, rows)]
    skipped = [s for r in page.reports for s in r.get("skipped_images", [])]
    if skipped:
        parts.append(f'<p class="note">{len(skipped)} unreadable images were left out: '
                     + html.escape(", ".join(s["image"] for s in skipped[:20])) + "</p>")
    if page.pictures:
        parts.append("<h2>Pictures</h2>")
        parts += [figure_html(p) for p in page.pictures]
    return page_html(page.title, "\n".join(parts))


def write_report(path: Path, page: ReportPage) -> Path:
    text = render_report(page)
    atomic_write(Path(path), lambda handle: handle.write(text), mode="w")
    return Path(path)


def evaluation_pictures(encoder, dataset, groups: int = 20, queries: int = 4, k: int = 5,
                        heatmaps: int = 2, seed: int = 0, progress: bool = True
                        ) -> list[Picture]:
    """The pictures of an evaluation report for one model: an embedding map of `groups` image
    groups, both retrieval grids, and heat maps where the model exposes spatial features.
    Embeddings come from the evaluation's cache, so only the heat maps run the model."""
    from crossmodal.errors import CrossmodalError
    from crossmodal.evaluation.embed import embed_dataset
    from crossmodal.viz.embedding_map import embedding_map_figure, panel_from
    from crossmodal.viz.figures import figure_png, sample_groups
    from crossmodal.viz.heatmap import heatmap_png
    from crossmodal.viz.retrieval_grid import retrieval_grid_png

    embeddings = embed_dataset(encoder, dataset, progress=progress)
    rows = sample_groups(dataset, groups, seed)
    pictures = []
    try:
        panel = panel_from(encoder.model_id, dataset, embeddings, rows)
        pictures.append(Picture(f"Embedding map (t-SNE) of {len(panel.images)} image groups "
                                "and their captions", figure_png(embedding_map_figure([panel]))))
    except CrossmodalError as exc:
        pictures.append(Picture("Embedding map", note=str(exc)))
    for direction in ("text-to-image", "image-to-text"):
        png = retrieval_grid_png(dataset, embeddings, direction, queries, k, seed)
        pictures.append(Picture(f"{direction.replace('-', ' ')}: top {k} of sample queries "
                                "(green = ground truth, red = not)", png))
    captions = {}
    for text, images in enumerate(dataset.text_images):
        captions.setdefault(images[0], dataset.texts[text])
    unreadable = {row for row, _ in embeddings.failed_images}
    shown = [r for r in rows if r in captions and r not in unreadable][: heatmaps + 1]
    for index, row in enumerate(shown[:heatmaps]):
        other = shown[(index + 1) % len(shown)]
        texts = [captions[row]] + ([captions[other]] if other != row else [])
        try:
            png = heatmap_png(encoder, dataset.images[row], texts, dataset.image_ids[row])
        except CrossmodalError as exc:
            pictures.append(Picture("Where-it-looks heat map", note=str(exc)))
            break
        pictures.append(Picture(f"Where it looks: {dataset.image_ids[row]} with its own caption "
                                "and another image's caption", png))
    return pictures
