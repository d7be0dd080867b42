"""Caption tables: CSV, TSV (a header line, then one caption a row) or JSONL (one object a line).

    image,caption                           {"image": "dogs/1.jpg", "caption": "a brown dog"}
    dogs/1.jpg,a brown dog                  {"image": "dogs/1.jpg", "caption": "it runs"}
    dogs/1.jpg,"it runs, fast"

The type comes from the extension: `.csv` (comma), `.tsv` (tab), both read with the csv module
(so a cell may be quoted), or `.jsonl`. The image column holds a path relative to IMAGE_ROOT
(default: the table's folder; an absolute path is kept), the text column one caption; a row
with an empty caption is skipped and recorded. Several captions of one image are separate
rows; each image file is one row of the dataset. Image ids come from ID_COLUMN where given
(one id, one file), else the image cell as written; text ids are ID#K. A row whose image
file is missing is skipped and recorded.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.data.parsing import (
    Builder,
    clean,
    expect_object,
    iter_jsonl,
    local_path,
    require_file,
    short,
    text_lines,
)
from crossmodal.errors import BadInputError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None}


def iter_table(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, row) of a CSV/TSV with a header line, or of a JSONL file of objects.

    `columns` must be in the CSV header (checked once) or in every JSONL object.
    """
    path = require_file(Path(path), "table file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise BadInputError(f"{path}: unknown table type '{suffix}' "
                            f"(expected one of {', '.join(TABLE_SUFFIXES)})")
    wanted = ", ".join(repr(c) for c in columns)
    if suffix == ".jsonl":
        for number, value in iter_jsonl(path):
            row = expect_object(value, f"{path}:{number}", wanted)
            missing = [c for c in columns if c not in row]
            if missing:
                raise BadInputError(f"{path}:{number}: expected keys {wanted}, "
                                    f"missing {', '.join(map(repr, missing))}")
            yield number, row
        return
    with contextlib.closing(text_lines(path, "table")) as lines:
        reader = csv.reader((line for _, line in lines), delimiter=TABLE_SUFFIXES[suffix])
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise BadInputError(f"{path}:{start}: unreadable row ({exc})") from exc
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                missing = [c for c in columns if c not in header]
                if missing:
                    raise BadInputError(f"{path}:{start}: expected a header with columns "
                                        f"{wanted}, got {', '.join(map(repr, header))}")
                continue
            if len(cells) != len(header):
                raise BadInputError(f"{path}:{start}: expected {len(header)} fields "
                                    f"as in the header, got {len(cells)}")
            yield start, dict(zip(header, cells, strict=True))
    if header is None:
        raise BadInputError(f"{path}: empty table (expected a header with {wanted})")


def cell(row: dict[str, object], column: str, where: str) -> str:
    """A table cell as a stripped string ('' when empty or null)."""
    value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadInputError(f"{where}: expected '{column}' to be a string, got {short(value)}")
    return str(value).strip()



def required_cell(row: dict[str, object], column: str, where: str) -> str:
    value = clean(cell(row, column, where))
    if not value:
        raise BadInputError(f"{where}: expected a non-empty '{column}'")
    return value


def load_table(path: str | Path, image_column: str = "image", text_column: str = "caption",
               image_root: str | Path | None = None, id_column: str | None = None
               ) -> RetrievalDataset:
    path = Path(path)
    root = Path(image_root if image_root is not None else path.parent).resolve()
    columns = [image_column, text_column] + ([id_column] if id_column else [])
    build = Builder(f"table/{path.stem}")
    counts: dict[int, int] = {}
    for number, row in iter_table(path, columns):
        where = f"{path}:{number}"
        image = required_cell(row, image_column, where)
        text = clean(cell(row, text_column, where))
        if not text:  # one bad row should not sink a training run: skipped and counted
            build.data.skipped.append((where, "empty caption"))
            continue
        image_id = required_cell(row, id_column, where) if id_column else image
        image_row = build.image(image_id, local_path(root, image), where)
        if image_row is not None:
            k = counts[image_row] = counts.get(image_row, 0) + 1
            build.data.add_text(text, image_row, f"{build.data.image_ids[image_row]}#{k - 1}")
    return build.data
