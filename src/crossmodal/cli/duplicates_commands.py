"""`crossmodal duplicates`: groups of exact copies and near-duplicate photos in an index."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crossmodal.cli.index_commands import plural
from crossmodal.models.duplicate_thresholds import HASH_DISTANCE


def _size(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, scale in (("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def format_groups(report, model: str) -> str:  # noqa: ANN001 - a DuplicateReport
    """The groups as a person reads them: per group its members, the largest file first."""
    hashes = (f"perceptual hashes within {report.hash_distance} bits"
              if report.hash_distance >= 0 else "no perceptual hashes")
    how = f"(cosine >= {report.threshold:.4f} by {model}, {hashes})"
    if not report.groups:
        return f"no duplicates among {report.items} images {how}"
    lines = [f"{plural(len(report.groups), 'group')}, {plural(report.duplicates, 'duplicate')} "
             f"among {report.items} images {how}"]
    width = max(len(m.id) for g in report.groups for m in g.members)
    for number, group in enumerate(report.groups, 1):
        kind = "exact copies" if group.exact else "near-duplicates"
        lines.append("")
        lines.append(click.style(f"group {number}: {len(group.members)} images, {kind}",
                                 bold=True))
        for rank, member in enumerate(group.members):
            how = "first" if rank == 0 else (f"same file as {member.copy_of}"
                                             if member.copy_of else "similar")
            lines.append(f"  {member.similarity:.4f}  {member.id:<{width}}  "
                         f"{_size(member.bytes):>9}  {how}")
    return "\n".join(lines)


@click.command("duplicates")
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--threshold", default="auto", show_default=True,
              help="Image-image cosine at or above which two photos are near-duplicates "
                   "(0 < T <= 1), or auto: the model's calibrated threshold.")
@click.option("--hash-distance", default=HASH_DISTANCE, show_default=True,
              type=click.IntRange(-1, 32),
              help="Perceptual hashes (any turn by 90 degrees) at most this many bits apart "
                   "of 64 are copies too; -1: compare by vectors (and file bytes) only.")
@click.option("--k", "k", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Nearest images compared per image.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def duplicates_command(index, threshold, hash_distance, k, as_json, quiet) -> None:
    """Group the exact copies (same file bytes) and near-duplicates among the images of
    INDEX: resized, re-encoded, brightened or turned copies (close perceptual hashes) and
    cropped or straightened ones (image vectors at or above the threshold)."""
    from crossmodal.collection.collection import Collection
    from crossmodal.collection.duplicates import find_duplicates
    from crossmodal.models.duplicate_thresholds import checked_threshold

    if threshold.strip().lower() != "auto":
        threshold = checked_threshold(threshold)  # before the index is opened
    collection = Collection.open(index)
    report = find_duplicates(collection, threshold, k, progress=not quiet and not as_json,
                             hash_distance=hash_distance)
    if report.unhashed:
        click.echo(f"note: {plural(report.unhashed, 'image')} compared by vector only (flat, "
                   "or indexed without a perceptual hash and its file unreadable)", err=True)
    if as_json:
        click.echo(json.dumps({"model": collection.manifest.model, **report.to_dict()},
                              ensure_ascii=False, indent=1))
        return
    click.echo(format_groups(report, collection.manifest.model))


COMMANDS = [duplicates_command]
