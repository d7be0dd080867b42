"""Self-contained HTML pages: the evaluation tables and pictures (PNG embedded as base64), so a
report is one file that opens anywhere, offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.evaluation.report import describe, table_rows
from crossmodal.storage import atomic_write

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 14px; }
.note { color: #a33; }
"""


@dataclass
class Picture:
    caption: str
    png: bytes | None = None  # None: the picture could not be made; `note` says why
    note: str = ""


@dataclass
class ReportPage:
    title: str
    reports: list[dict]  # evaluation reports (crossmodal.evaluation.run.evaluate_model)
    sections: list[tuple[str, str]]  # (heading, table layout of crossmodal.evaluation.report)
    pictures: list[Picture] = field(default_factory=list)


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 2
               ) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td{"" if i < text_columns else " class=num"}>{html.escape(str(cell))}</td>'
            for i, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(picture: Picture) -> str:
    caption = f"<figcaption>{html.escape(picture.caption)}</figcaption>"
    if picture.png is None:
        return (f'<figure>{caption}<p class="note">not drawn: '
                f"{html.escape(picture.note)}</p></figure>")
    note = f"<p>{html.escape(picture.note)}</p>" if picture.note else ""
    return f"<figure>{img_tag(picture.png, picture.caption)}{caption}{note}</figure>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


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
        parts += [_figure(p) for p in page.pictures]
    return _page(page.title, "\n".join(parts))


def picture_page(title: str, png: bytes) -> str:
    return _page(title, _figure(Picture(title, png)))


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
