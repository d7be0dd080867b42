"""Tables in the layouts the papers use: terminal text and markdown, from report dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

I2T, T2I = "image_to_text", "text_to_image"


class Layout(NamedTuple):
    title: str  # the heading of its table
    columns: list[tuple[str, str | None, str]]  # (header, direction or None, metric key)


LAYOUTS: dict[str, Layout] = {
    "retrieval": Layout("R@K both directions, Rsum, Mean Recall (IConE / CE-CLIP layout)", [
        ("i2t R@1", I2T, "R@1"), ("i2t R@5", I2T, "R@5"), ("i2t R@10", I2T, "R@10"),
        ("t2i R@1", T2I, "R@1"), ("t2i R@5", T2I, "R@5"), ("t2i R@10", T2I, "R@10"),
        ("Rsum", None, "rsum"), ("i2t MR", I2T, "MeanR"), ("t2i MR", T2I, "MeanR"),
    ]),
    # Text -> image as NewsImages 2022 ranks images for an article: MRR and R@5..100.
    "newsimages": Layout("text->image MRR and R@K (NewsImages layout)", [
        ("MRR", T2I, "MRR"), ("R@5", T2I, "R@5"), ("R@10", T2I, "R@10"), ("R@20", T2I, "R@20"),
        ("R@50", T2I, "R@50"), ("R@100", T2I, "R@100"),
    ]),
    "within": Layout("retrieval within one modality, the query left out (CUSA's uni-modal "
                     "columns)", [
        ("R@1", "within", "R@1"), ("R@5", "within", "R@5"), ("R@10", "within", "R@10"),
        ("MedR", "within", "MedR"), ("MnR", "within", "MnR"), ("MRR", "within", "MRR"),
        ("mAP@R", "within", "mAP@R"), ("R-P", "within", "R-P"),
    ]),
    "ranks": Layout("ranks and ECCV Caption metrics", [
        ("i2t MedR", I2T, "MedR"), ("i2t MnR", I2T, "MnR"), ("i2t MRR", I2T, "MRR"),
        ("i2t mAP@R", I2T, "mAP@R"), ("i2t R-P", I2T, "R-P"),
        ("t2i MedR", T2I, "MedR"), ("t2i MnR", T2I, "MnR"), ("t2i MRR", T2I, "MRR"),
        ("t2i mAP@R", T2I, "mAP@R"), ("t2i R-P", T2I, "R-P"),
    ]),
}


def _cell(report: dict, direction: str | None, key: str) -> str:
    value = report.get(key) if direction is None else report[direction].get(key)
    if value is None:
        return "-"
    return f"{value:.3f}" if key == "MRR" else f"{value:.1f}"


def table_rows(reports: Sequence[dict], layout: str) -> tuple[list[str], list[list[str]]]:
    columns = LAYOUTS[layout].columns
    header = ["model", "data"] + [name for name, _, _ in columns]
    rows = [[r["model"], r["dataset"]] + [_cell(r, d, k) for _, d, k in columns]
            for r in reports]
    return header, rows


def markdown_table(reports: Sequence[dict], layout: str) -> str:
    header, rows = table_rows(reports, layout)
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(reports: Sequence[dict], layout: str) -> str:
    header, rows = table_rows(reports, layout)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*row) for row in [header, *rows])


def describe(reports: Sequence[dict]) -> str:
    first = reports[0]
    folds = f", mean of {first['folds']} folds" if first.get("folds") else ""
    if first.get("task") in ("image-image", "text-text"):
        folds += (f"; {first['task']}: {first['queries']} queries, each against the other "
                  f"{first['gallery']}")
    return (f"{first['images']} images, {first['texts']} texts{folds}; ties: {first['ties']} "
            f"(a negative tied with a positive ranks "
            f"{'above' if first['ties'] == 'pessimistic' else 'below'} it)")
