"""`crossmodal embed` (Ray, clip-retrieval layout) and `crossmodal import-embeddings`."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from crossmodal.models.registry import DEFAULT_MODEL

RAY_HELP = ("Ray cluster address: 'auto' (the cluster `ray start` runs here), HOST:PORT, "
            "ray://HOST:PORT, or 'local' (start one for this run).")


def _print_embed_report(report) -> None:
    click.echo(f"{report.computed} shards embedded ({report.rows} image-caption rows) and "
               f"{report.already_done} already done, of {report.shards}, in {report.out}"
               + (f"; {report.workers} workers, {report.seconds:.1f} s" if report.workers else ""))
    skipped = len(report.skipped) + report.skipped_in_shards
    if skipped:
        click.echo(f"skipped {skipped} inputs (per-shard reasons in {report.out}/crossmodal/)",
                   err=True)
        for what, why in report.skipped[:10]:
            click.echo(f"  {what}: {why}", err=True)
    if report.skipped_captions:  # counted apart from inputs, as `crossmodal index` does
        click.echo(f"skipped {len(report.skipped_captions)} captions:", err=True)
        for where, why in report.skipped_captions[:10]:
            click.echo(f"  {where}: {why}", err=True)


def _print_import_report(report) -> None:
    click.echo(f"imported {report.added} items ({report.texts} captions) from "
               f"{report.shards} shards into {report.into} ({report.model}); "
               f"{report.already_present} already there")
    if report.captions_without_vectors:
        click.echo(f"note: {report.captions_without_vectors} captions had no text_emb vectors "
                   "and were left out", err=True)


def run_embed(plan, out: Path, model: str, ray: str, workers: int | None, batch_size: int,
              quiet: bool):
    from crossmodal.distributed.ray_embed import embed_plan

    report = embed_plan(plan, out, model, ray, workers, batch_size, progress=not quiet)
    _print_embed_report(report)
    return report


def index_with_ray(inputs, into: Path, model: str | None, caption_files, index_type: str,
                   ray: str, workers: int | None, batch_size: int, quiet: bool,
                   store: str = "faiss") -> None:
    """`crossmodal index --ray`: embed the items not yet indexed on the cluster, import them.

    The shards go to INTO/.ray-work/<plan>/ (rerunning the same command resumes there) and
    are deleted once imported.
    """
    from crossmodal.collection.collection import Collection
    from crossmodal.distributed.importer import import_embeddings
    from crossmodal.distributed.inputs import plan_shards, without_items

    collection = Collection.create(into, model=model or DEFAULT_MODEL, index_type=index_type,
                                   store=store)
    plan = plan_shards(list(inputs), list(caption_files))
    plan = without_items(plan, {item["id"] for item in collection.items})
    if not plan.shards:
        click.echo(f"nothing new to index in {into}")
        return
    work = into / ".ray-work" / plan.fingerprint
    run_embed(plan, work, collection.manifest.model, ray, workers, batch_size, quiet)
    _print_import_report(import_embeddings(work, into, progress=not quiet,
                                           collection=collection))
    shutil.rmtree(into / ".ray-work", ignore_errors=True)


@click.command("embed")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output folder (clip-retrieval layout); rerunning resumes it.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--captions", "caption_files", multiple=True, type=click.Path(path_type=Path),
              help="Caption file(s) for folder inputs, as `crossmodal index` reads them.")
@click.option("--ray", "ray", default="local", show_default=True, help=RAY_HELP)
@click.option("--workers", type=int, default=None,
              help="Encoder actors (one CPU each; default: all CPUs of the cluster).")
@click.option("--shard-size", default=1000, show_default=True,
              help="Images per shard for folders and tables (a tar is one shard).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def embed_command(inputs, out, model, caption_files, ray, workers, shard_size, batch_size,
                  quiet) -> None:
    """Embed folders, webdataset tars or a parquet/CSV of paths+captions on a Ray cluster.

    Writes img_emb/, text_emb/ and metadata/ shards as clip-retrieval does; shards already
    written are never redone, so rerun the same command after a failure.
    """
    from crossmodal.distributed.inputs import plan_shards

    plan = plan_shards(list(inputs), list(caption_files), shard_size)
    run_embed(plan, out, model, ray, workers, batch_size, quiet)


@click.command("import-embeddings")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--into", required=True, type=click.Path(path_type=Path),
              help="Index folder (created if missing; items already there are kept).")
@click.option("--model", default=None,
              help="Model that made the vectors (default: the one the folder records).")
@click.option("--index-type", type=click.Choice(["flat", "hnsw", "ivfpq"]), default="flat",
              show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def import_command(folder, into, model, index_type, quiet) -> None:
    """Build an index from a clip-retrieval embeddings FOLDER without encoding anything."""
    from crossmodal.distributed.importer import import_embeddings

    _print_import_report(import_embeddings(folder, into, model, index_type, progress=not quiet))


COMMANDS = [embed_command, import_command]
