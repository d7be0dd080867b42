"""`crossmodal index`, `remove`, `info`, `models`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crossmodal.models.registry import DEFAULT_MODEL


def _print_skipped(entries: list[tuple[str, str]], noun: str, shown: int = 20) -> None:
    if not entries:
        return
    click.echo(f"skipped {len(entries)} {noun}:", err=True)
    for what, why in entries[:shown]:
        click.echo(f"  {what}: {why}", err=True)
    if len(entries) > shown:
        click.echo(f"  ... and {len(entries) - shown} more (all in the log)", err=True)


def print_add_report(report, into: Path) -> None:
    click.echo(
        f"indexed {report.added} new and {report.updated} changed images "
        f"({report.texts} captions), {report.unchanged} unchanged, into {into}"
    )
    if report.truncated:
        click.echo(f"note: {len(report.truncated)} captions were longer than the model's context "
                   "and were truncated (listed in the log)")
    _print_skipped(report.skipped_files, "files")
    _print_skipped(report.skipped_captions, "captions")
    for note in getattr(report, "notes", []):
        click.echo(f"note: {note}")
    if report.log_path:
        click.echo(f"details: {report.log_path}", err=True)


@click.command("index")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--into", "into", required=True, type=click.Path(path_type=Path),
              help="Index folder (created if missing; re-running adds only new or changed files).")
@click.option("--model", default=None,
              help=f"Model id (default {DEFAULT_MODEL}; an existing index keeps its own).")
@click.option("--captions", "caption_files", multiple=True, type=click.Path(path_type=Path),
              help="Caption file(s): IMAGE<TAB>caption, IMAGE#K caption, .json or .jsonl.")
@click.option("--index-type", type=click.Choice(["flat", "hnsw", "ivfpq"]), default=None,
              help="exact search (flat, the default for a new index), or approximate for large "
                   "collections; for an existing index of another type, add --convert")
@click.option("--convert", is_flag=True,
              help="Rebuild an existing index as --index-type before adding.")
@click.option("--retrain", is_flag=True,
              help="Retrain an IVF-PQ index on all its vectors after adding (it also retrains "
                   "by itself once the collection is 4x what it was trained on).")
@click.option("--store", default="faiss", show_default=True,
              help="Where vectors live, for a new index: faiss (files in the folder), milvus "
                   "(Milvus Lite in the folder), milvus:PATH or milvus:http://HOST:19530.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--ray", "ray", default=None, metavar="ADDRESS",
              help="Embed on a Ray cluster ('auto', HOST:PORT or 'local'); inputs may also be "
                   "webdataset .tar files or a parquet/CSV of paths and captions. New items only.")
@click.option("--workers", type=int, default=None, help="With --ray: encoder actors.")
def index_command(inputs, into, model, caption_files, index_type, convert, retrain, store,
                  batch_size, quiet, ray, workers) -> None:
    """Embed images under INPUTS (folders or files) and their captions into an index."""
    from crossmodal.engine import Collection
    from crossmodal.errors import BadInputError
    from crossmodal.index.manifest import MANIFEST

    existing = (into / MANIFEST).is_file()
    if existing:
        collection = Collection.open(into, model=model)
        held = collection.manifest.index_type
        if index_type and index_type != held and not convert:
            raise BadInputError(
                f"{into} is a {held} index; --index-type {index_type} applies to new indexes: "
                f"build into a new folder, or add --convert to rebuild this one as {index_type}")
        if convert and index_type and index_type != held:
            collection.convert(index_type)
            click.echo(f"converted {into} from {held} to {index_type}")
    if ray:
        from crossmodal.cli.distributed_commands import index_with_ray

        index_with_ray(inputs, into, model, caption_files, index_type or "flat", ray, workers,
                       batch_size, quiet, store)
        return
    if not existing:
        collection = Collection.create(into, model=model or DEFAULT_MODEL,
                                       index_type=index_type or "flat", store=store)
    report = collection.add_paths(inputs, caption_files, batch_size=batch_size,
                                  progress=not quiet)
    print_add_report(report, into)
    if retrain:
        if collection.manifest.index_type != "ivfpq":
            click.echo(f"note: --retrain: {into} is a {collection.manifest.index_type} index, "
                       "which needs no training")
        for note in collection.compact(retrain=True):
            click.echo(f"note: {note}")


@click.command("remove")
@click.argument("index", type=click.Path(path_type=Path))
@click.argument("item_ids", nargs=-1, required=True)
def remove_command(index, item_ids) -> None:
    """Remove items (and their captions) from INDEX by id."""
    from crossmodal.engine import Collection
    from crossmodal.item_ids import normal_item_id

    item_ids = [normal_item_id(item_id) for item_id in item_ids]  # the server's rule
    collection = Collection.open(index)
    unique = list(dict.fromkeys(item_ids))
    missing = collection.remove(unique)
    click.echo(f"removed {len(unique) - len(missing)} items; {len(collection)} remain")
    for item_id in missing:
        click.echo(f"not found: {item_id}", err=True)


@click.command("info")
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="Check every file against its checksum.")
def info_command(index, verify) -> None:
    """Show what an index holds and which model built it; with --verify, exit status 1
    when a file fails its checksum."""
    from crossmodal.engine import Collection
    from crossmodal.errors import IndexCorruptError
    from crossmodal.index.generations import committed_counts
    from crossmodal.index.manifest import Manifest

    try:
        collection = Collection.open(index)
    except IndexCorruptError as exc:
        if not verify:
            raise
        # The checksums tell which file is bad even when the index cannot be opened.
        manifest = Manifest.load(index)
        stats = {"path": str(index), "model": manifest.model,
                 **committed_counts(index, manifest),
                 "generation": manifest.generation, "verified": False,
                 "bad_files": manifest.verify(index), "error": str(exc)}
        click.echo(json.dumps(stats, indent=1))
        raise SystemExit(1) from None  # as `sha256sum -c` does: scripts can test the status
    stats = collection.stats()
    if verify:
        bad = collection.manifest.verify(index)
        stats["verified"] = not bad
        stats["bad_files"] = bad
    click.echo(json.dumps(stats, indent=1))
    if verify and not stats["verified"]:
        raise SystemExit(1)


@click.command("drop")
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drop_command(index, yes) -> None:
    """Delete INDEX: the Milvus collections it owns (if any), then its folder."""
    import shutil

    from crossmodal.engine import TARGETS
    from crossmodal.errors import BadInputError
    from crossmodal.index.manifest import Manifest
    from crossmodal.index.stores import drop_store

    try:
        store = Manifest.load(index).store
    except FileNotFoundError:
        raise BadInputError(f"no crossmodal index at {index}: nothing to drop") from None
    also = f" and its collections on Milvus {store['uri']}" if store.get("backend") == "milvus" \
        else ""
    if not yes:
        click.confirm(f"delete {index}{also}?", abort=True)
    kept = drop_store(store, index, TARGETS)
    shutil.rmtree(index)
    click.echo(f"dropped {index}")
    if kept:
        click.echo(f"kept {', '.join(kept)}: another index folder owns them (this was a copy)",
                   err=True)


@click.command("models")
def models_command() -> None:
    """List model ids that can be used."""
    from crossmodal.models.registry import available_models

    for name in available_models():
        click.echo(f"{name}  (default)" if name == DEFAULT_MODEL else name)


COMMANDS = [index_command, remove_command, info_command, drop_command, models_command]
