"""`crossmodal index`, `remove`, `info`, `models`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from crossmodal.cli.targets import INDEX_TARGET
from crossmodal.models.registry import DEFAULT_MODEL


def plural(count: int, noun: str) -> str:
    """'1 item', '2 items'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _print_skipped(entries: list[tuple[str, str]], noun: str, verbose: bool = False,
                   listed: int = 5) -> None:
    """A few skips one a line; more as one line counting them by reason (all of them are in
    the log, and on the terminal with --verbose)."""
    if not entries:
        return
    if verbose or len(entries) <= listed:
        click.echo(f"skipped {plural(len(entries), noun)}:", err=True)
        for what, why in entries:
            # A name with a newline or tab (or undecodable bytes) is shown escaped.
            click.echo(f"  {what if what.isprintable() else ascii(what)}: {why}", err=True)
        return
    kinds: dict[str, list[str]] = {}
    for _, why in entries:
        kinds.setdefault(re.sub(r"'[^']*'", "'…'", why), []).append(why)
    counted = "; ".join(f"{len(whys)} {kind}" + (f" (e.g. {_example(whys[0])})" if "'…'" in kind
                                                  else "")
                        for kind, whys in sorted(kinds.items(), key=lambda kv: -len(kv[1])))
    click.echo(f"skipped {plural(len(entries), noun)}: {counted} (all listed in the log; "
               "--verbose shows them)", err=True)


def _example(why: str) -> str:
    match = re.search(r"'[^']*'", why)
    return match.group(0) if match else why


def print_add_report(report, into: Path, verbose: bool = False) -> None:
    click.echo(
        f"indexed {report.added} new and {report.updated} changed images "
        f"({report.texts} captions), {report.unchanged} unchanged, into {into}"
    )
    if report.truncated:
        click.echo(f"note: {len(report.truncated)} captions were longer than the model's context "
                   "and were truncated (listed in the log)")
    if getattr(report, "ocr_read", 0) or getattr(report, "skipped_ocr", None):
        click.echo(f"read text in {report.ocr_found} of {plural(report.ocr_read, 'photo')}")
    _print_skipped(report.skipped_files, "file", verbose)
    _print_skipped(getattr(report, "skipped_ocr", []), "photo's text", verbose)
    _print_skipped(report.skipped_captions, "caption", verbose)
    for note in getattr(report, "notes", []):
        click.echo(f"note: {note}")
    if report.log_path:
        click.echo(f"details: {report.log_path}", err=True)


def _require_inputs(inputs) -> None:
    """A mistyped path is refused before the model loads and before any folder is made."""
    from crossmodal.errors import BadInputError

    missing = [str(path) for path in inputs if not Path(path).expanduser().exists()]
    if missing:
        raise BadInputError(f"path not found: {', '.join(missing)}: nothing was indexed "
                            "and no index was created")


def _index_new(inputs, into: Path, model, caption_files, index_type, store, batch_size,
               quiet, keep_empty: bool = False, reader=None):
    """Create the index and add to it; when nothing could be added (an empty folder, only
    unreadable files; kept with `keep_empty`: a watched folder fills later) or adding fails,
    what was made is removed again."""
    from crossmodal.collection.collection import Collection
    from crossmodal.errors import BadInputError

    _require_inputs(inputs)
    made_folder = not into.exists()
    collection = Collection.create(into, model=model or DEFAULT_MODEL,
                                   index_type=index_type or "flat", store=store)
    try:
        report = collection.add_paths(inputs, caption_files, batch_size=batch_size,
                                      progress=not quiet, ocr=reader)
        if not len(collection) and not keep_empty:
            raise BadInputError(_nothing_indexed(inputs, report))
    except BaseException:
        collection.discard(remove_folder=made_folder)
        raise
    return collection, report


def _nothing_indexed(inputs, report) -> str:
    where = ", ".join(str(path) for path in inputs)
    if not report.skipped_files:
        why = "no image files there (looked for .jpg, .png, .webp, ...)"
    else:
        reasons = sorted({reason.split(":")[0] for _, reason in report.skipped_files})
        why = (f"{len(report.skipped_files)} files skipped, none an image that could be read "
               f"({'; '.join(reasons[:3])})")
    return f"nothing to index in {where}: {why}; no index was created"


def _text_reader(ray):
    """The OCR engine for --ocr, checked before the model loads or any folder is made."""
    from crossmodal.data.ocr import TextReader, require_ocr
    from crossmodal.errors import BadInputError

    if ray:
        raise BadInputError("--ocr does not run on Ray yet: index without --ray to read text")
    require_ocr()
    return TextReader()


@click.command("index")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--into", "into", required=True, type=INDEX_TARGET,
              help="Index folder (created if missing; re-running adds only new or changed "
                   "files), or a Milvus collection: milvus://HOST:PORT/NAME.")
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
@click.option("--verbose", is_flag=True,
              help="List every file and caption skipped (else: counted, listed in the log).")
@click.option("--ray", "ray", default=None, metavar="ADDRESS",
              help="Embed on a Ray cluster ('auto', HOST:PORT or 'local'); inputs may also be "
                   "webdataset .tar files or a parquet/CSV of paths and captions. New items only.")
@click.option("--workers", type=int, default=None, help="With --ray: encoder actors.")
@click.option("--watch", is_flag=True,
              help="After indexing, follow the folder: additions, changes, deletions and "
                   "renames are applied as they happen, one line per batch (Ctrl-C stops).")
@click.option("--ocr", is_flag=True,
              help="Also read the text in each photo (signs, menus, labels; Chinese and "
                   "English) and index it as captions, so that a search for the words finds "
                   "the photo. Needs pip install 'crossmodal[ocr]'.")
def index_command(inputs, into, model, caption_files, index_type, convert, retrain, store,
                  batch_size, quiet, verbose, ray, workers, watch, ocr) -> None:
    """Embed images under INPUTS (folders or files) and their captions into an index."""
    from crossmodal.collection.collection import Collection
    from crossmodal.collection.targets import is_collection_uri
    from crossmodal.errors import BadInputError

    if is_collection_uri(into):
        if ocr:
            raise BadInputError("--ocr works on index folders, not yet on a Milvus "
                                "collection")
        if watch:
            raise BadInputError("--watch follows a folder into an index folder, not yet into "
                                "a Milvus collection: run the same command again instead")
        index_into_collection(inputs, into, model, caption_files, index_type, batch_size,
                              quiet, verbose, ray)
        return

    if watch:
        from crossmodal.cli.watching import require_watchable

        require_watchable(inputs, ray)

    reader = _text_reader(ray) if ocr else None

    existing = Collection.exists(into)
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
    if existing:
        report = collection.add_paths(inputs, caption_files, batch_size=batch_size,
                                      progress=not quiet, ocr=reader)
    else:
        collection, report = _index_new(inputs, into, model, caption_files, index_type, store,
                                        batch_size, quiet, keep_empty=watch,
                                        reader=reader)
    print_add_report(report, into, verbose)
    if retrain:
        if collection.manifest.index_type != "ivfpq":
            click.echo(f"note: --retrain: {into} is a {collection.manifest.index_type} index, "
                       "which needs no training")
        for note in collection.compact(retrain=True):
            click.echo(f"note: {note}")
    if watch:
        from crossmodal.cli.watching import follow

        follow(collection, Path(inputs[0]).expanduser(), batch_size, verbose, caption_files)


def index_into_collection(inputs, into: str, model: str | None, caption_files,
                          index_type: str | None, batch_size: int, quiet: bool,
                          verbose: bool, ray: str | None) -> None:
    """Create the collection if needed (a new one that ends up empty is dropped again),
    then add the new or changed files under `inputs`."""
    from crossmodal.collection.milvus_collection import MilvusCollection
    from crossmodal.errors import BadInputError

    if ray:
        raise BadInputError("--ray does not write into a Milvus collection yet: index "
                            "without --ray, or --ray into a folder")
    _require_inputs(inputs)
    existing = MilvusCollection.exists(into)
    if existing:
        collection = MilvusCollection.open(into, model=model)
        held = collection.manifest.index_type
        if index_type and index_type != held:
            raise BadInputError(f"{into} is a {held} collection; --index-type applies to new "
                                "collections")
    else:
        collection = MilvusCollection.create(into, model=model or DEFAULT_MODEL,
                                             index_type=index_type or "flat")
    try:
        report = collection.add_paths(inputs, caption_files, batch_size=batch_size,
                                      progress=not quiet)
        if not existing and not len(collection):
            raise BadInputError(_nothing_indexed(inputs, report))
    except BaseException:
        if not existing:
            collection.discard()
        raise
    print_add_report(report, into, verbose)
    click.echo(f"{len(collection)} items in {into}")
    collection.close()


@click.command("remove")
@click.argument("index", type=INDEX_TARGET)
@click.argument("item_ids", nargs=-1, required=True)
def remove_command(index, item_ids) -> None:
    """Remove items (and their captions) from INDEX by id."""
    from crossmodal.collection.targets import open_collection
    from crossmodal.item_ids import normal_item_id

    collection = open_collection(index)
    # The server's rule; an id stored exactly as given (indexed before files were held to
    # that rule, e.g. with a newline) can still be removed by its exact spelling.
    item_ids = [item_id if item_id in collection else normal_item_id(item_id)
                for item_id in item_ids]
    unique = list(dict.fromkeys(item_ids))
    missing = collection.remove(unique)
    click.echo(f"removed {plural(len(unique) - len(missing), 'item')}; "
               f"{len(collection)} remain")
    for item_id in missing:
        click.echo(f"not found: {item_id}", err=True)


@click.command("info")
@click.argument("index", type=INDEX_TARGET)
@click.option("--verify", is_flag=True, help="Check every file against its checksum.")
def info_command(index, verify) -> None:
    """Show what an index holds and which model built it; with --verify, exit status 1
    when a file fails its checksum."""
    from crossmodal.collection.targets import collection_class

    # With --verify, even an index that cannot be opened is described (its bad files).
    stats = collection_class(index).inspect(index, verify=verify)
    click.echo(json.dumps(stats, indent=1))
    if verify and not stats["verified"]:
        raise SystemExit(1)  # as `sha256sum -c` does: scripts can test the status


@click.command("drop")
@click.argument("index", type=INDEX_TARGET)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drop_command(index, yes) -> None:
    """Delete INDEX: the Milvus collections it owns (if any), then its folder."""
    from crossmodal.collection.targets import collection_class

    def confirm(what: str) -> None:
        click.confirm(f"delete {what}?", abort=True)

    kept = collection_class(index).drop(index, confirm=None if yes else confirm)
    click.echo(f"dropped {index}")
    if kept:
        click.echo(f"kept {', '.join(kept)}: another index folder owns them (this was a copy)",
                   err=True)


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models_command(as_json) -> None:
    """List model ids: languages, embedding dimension, the extra each needs, whether its
    weights are on this machine, and the default (marked *)."""
    from crossmodal.models.catalog import catalog

    entries = catalog()
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=1))
        return
    rows = [("id", "languages", "dim", "needs", "weights here", "")]
    for e in entries:
        needs = "-" if not e.extra else \
            f"[{e.extra}]" + ("" if e.installed else " (not installed)")
        if e.pattern:
            here = "-"
        elif e.weights_here:
            here = "yes"
        else:
            here = "no: download" if e.installed or e.id.startswith("open_clip:") else "no"
        languages = "-" if e.pattern else ",".join(e.languages) or "any"
        rows.append((e.id + (" *" if e.default else ""), languages,
                     str(e.dim or "-"), needs, here, e.note))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                   + "  " + row[5])
    click.echo(f"* the default ({DEFAULT_MODEL}); needs: pip install 'crossmodal[EXTRA]'")


COMMANDS = [index_command, remove_command, info_command, drop_command, models_command]
