"""`crossmodal finetune`: the user's photos and captions in, a model folder out."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.models import registry

# A fine-tune starts from the package's default model (a fusion: each member fine-tuned).
DEFAULT_FROM = registry.DEFAULT_MODEL


@click.command("finetune")
@click.option("--from", "base", default=DEFAULT_FROM, show_default=True,
              help="Model to start from: the default fusion, towers:NAME, a tower config, a "
                   "fusion of towers:, a model folder, or an hf: CLIP / Chinese-CLIP model.")
@click.option("--data", required=True,
              help="Your photos and captions: a folder with sidecar captions (dog.jpg + "
                   "dog.txt), a table (photos.csv with image,caption columns), or any dataset "
                   "spec (table:FILE, flickr8k-cn:ROOT:train:zh, coco:..., albef:...).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="New folder for the model (then: --model OUT).")
@click.option("--val", default=None,
              help="Held-out data to measure on (default: a part of --data, by image).")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="Share of --data's images held out when --val is not given.")
@click.option("--seed", default=0, show_default=True,
              help="Seeds the held-out draw, the shuffling and the dropout.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", type=float, default=None,
              help="Learning rate of the heads [default: 1e-3, as measured].")
@click.option("--fresh-heads", is_flag=True,
              help="Start from seeded random heads instead of the base model's (to measure "
                   "what the base's own heads bring).")
@click.option("--overwrite", is_flag=True, help="Replace a model finetune wrote in --out.")
@click.option("--resume", is_flag=True,
              help="Require an interrupted run in --out (rerunning the same command resumes "
                   "one anyway).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def finetune_command(base, data, out, val, val_fraction, seed, epochs, batch_size, lr,
                     fresh_heads, overwrite, resume, quiet) -> None:
    """Fine-tune a model on your photos and captions: checks the data, holds out a part,
    trains the base model's heads on cached backbone features (best epoch by the held-out
    Rsum), prints before/after and writes OUT (model folder + MODEL_CARD.md)."""
    from crossmodal.train.finetune import DEFAULT_LR, FinetuneRequest, run_finetune

    request = FinetuneRequest(base=base, data=data, out=out, val=val, val_fraction=val_fraction,
                              seed=seed, epochs=epochs, batch_size=batch_size,
                              lr=DEFAULT_LR if lr is None else lr,
                              fresh_heads=fresh_heads, overwrite=overwrite, resume=resume,
                              progress=not quiet)
    card = run_finetune(request, say=lambda line: click.echo(line, err=True))
    _print_results(card, epochs)
    out = Path(card["out"])
    click.echo(f"\nmodel: {out}  (crossmodal index --model {out} ...)")
    click.echo(f"card:  {out / 'MODEL_CARD.md'}  ({card['wall_s']:.0f} s)")


def _print_results(card: dict, epochs: int) -> None:
    from crossmodal.train.model_output import language_tables, member_lines, retrieval_table

    counts = card["counts"]
    which = ("the fusion of the fine-tuned members" if "members" in card
             else f"best epoch {card['best_epoch']} of {epochs}")
    click.echo(f"\nheld-out retrieval ({counts['val_images']} images, {counts['val_texts']} "
               f"captions), {which}:")
    click.echo(retrieval_table(card["before"], card["after"]))
    for title, table in language_tables(card):
        click.echo(f"\n{title}:\n{table}")
    lines = member_lines(card)
    if lines:
        click.echo("\nmembers:\n" + "\n".join(f"  {line}" for line in lines))


COMMANDS = [finetune_command]
