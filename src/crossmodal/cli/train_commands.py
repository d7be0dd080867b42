"""`crossmodal train-heads`: fit a tower's projection heads on Flickr8K-CN features."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("train-heads")
@click.option("--tower", default="lite-en", show_default=True,
              help="Shipped tower name or a tower JSON config.")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path),
              help="Flickr8K-CN folder (e.g. ../shared/data/flickr8k-cn).")
@click.option("--language", "languages", multiple=True, default=("en",), show_default=True,
              type=click.Choice(["en", "zh"]),
              help="Caption language(s) to train on; validation uses the first.")
@click.option("--epochs", default=40, show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the head weights (default: the config's weights path).")
def train_heads_command(tower, data_root, languages, epochs, batch_size, lr, out) -> None:
    """Train projection heads on frozen towers (cached features, symmetric InfoNCE)."""
    from crossmodal.train.head_run import run_head_training
    from crossmodal.train.heads import HeadTrainingConfig

    config = HeadTrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr)
    result = run_head_training(tower, data_root, list(languages), config, out)
    val = result["val"]
    click.echo(json.dumps({"weights": result["weights"], "val": val}, indent=1))


@click.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Training config (TOML or JSON): model, data, stages; see configs/.")
@click.option("--no-resume", is_flag=True, help="Start over even if a checkpoint exists.")
def train_command(config_path: Path, no_resume: bool) -> None:
    """Staged training (losses, freezing, schedule per stage), best heads kept by val Rsum."""
    from crossmodal.train.run import load_and_run

    result = load_and_run(config_path, resume=not no_resume)
    val = result["val"]
    click.echo(f"best val Rsum {val['rsum']:.1f} (stage {result['stage']}, epoch "
               f"{result['epoch']}); use it as --model towers:{result['tower_config']}")


COMMANDS = [train_heads_command, train_command]
