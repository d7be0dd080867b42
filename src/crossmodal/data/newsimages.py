"""NewsImages (MediaEval 2022 style) article tables: one news article and its image a row.

    aid<TAB>title<TAB>text<TAB>iid                     (a header line; extra columns ignored)
    1a2b3c<TAB>Flood in town<TAB>Residents ...<TAB>9f8e7d

CSV (`.csv`), TSV (`.tsv`) or JSONL (`.jsonl`) as in `crossmodal.data.table`. The columns:
    article_column  the article id (default `aid`), the text id; empty: the line number
    title_column    the headline (default `title`)
    text_column     the body or snippet (default `text`); None for headline-only queries
    image_column    the image file name or id (default `iid`); a cell without an image
                    extension gets IMAGE_SUFFIX (default `.jpg`): IMAGE_ROOT/9f8e7d.jpg
Each article becomes one query text, "title. body" with whitespace normalised (no extra '.'
when the title already ends in punctuation), and the image of the row is its one positive;
an image shared by several articles is one row. An article with no image cell, a missing
image file, or neither title nor body is dropped and recorded in `skipped`.
"""

from __future__ import annotations

from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.images import is_image_path
from crossmodal.data.parsing import Builder, clean, local_path
from crossmodal.data.table import cell, iter_table

_END = (".", "!", "?", ":", ";", "…", "。", "！", "？")


def article_text(title: str, body: str) -> str:
    """'title. body', whitespace normalised; either part alone when the other is empty."""
    title, body = clean(title), clean(body)
    if title and body:
        return f"{title} {body}" if title.endswith(_END) else f"{title}. {body}"
    return title or body


def load_newsimages(path: str | Path, image_root: str | Path, *,
                    article_column: str = "aid", title_column: str = "title",
                    text_column: str | None = "text", image_column: str = "iid",
                    image_suffix: str = ".jpg") -> RetrievalDataset:
    path = Path(path)
    root = Path(image_root).resolve()  # absolute paths: feature caches key on them
    columns = [article_column, title_column, image_column] + ([text_column] if text_column else [])
    build = Builder(f"newsimages/{path.stem}")
    for number, row in iter_table(path, columns):
        where = f"{path}:{number}"
        article = cell(row, article_column, where) or str(number)
        body = cell(row, text_column, where) if text_column else ""
        text = article_text(cell(row, title_column, where), body)
        image = cell(row, image_column, where)
        if not text or not image:
            build.skip(f"{where} (article {article})", "no text" if not text else "no image")
            continue
        has_suffix = is_image_path(Path(image))
        image_id = image[: -len(Path(image).suffix)] if has_suffix else image
        name = image if has_suffix else image + image_suffix
        image_row = build.image(image_id, local_path(root, name), where)
        if image_row is not None:
            build.data.add_text(text, image_row, article)
    return build.data
