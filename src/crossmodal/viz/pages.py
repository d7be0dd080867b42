"""Self-contained HTML pages (PNG embedded as base64): what a single picture's page and the
evaluation report share, so a page is one file that opens anywhere, offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

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


def figure_html(picture: Picture) -> str:
    caption = f"<figcaption>{html.escape(picture.caption)}</figcaption>"
    if picture.png is None:
        return (f'<figure>{caption}<p class="note">not drawn: '
                f"{html.escape(picture.note)}</p></figure>")
    note = f"<p>{html.escape(picture.note)}</p>" if picture.note else ""
    return f"<figure>{img_tag(picture.png, picture.caption)}{caption}{note}</figure>"


def page_html(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def picture_page(title: str, png: bytes) -> str:
    return page_html(title, figure_html(Picture(title, png)))
