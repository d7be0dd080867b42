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
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Captions to validate on (val split) and, by default, to train on.")
@click.option("--train-language", default=None,
              help="Captions to train on, e.g. zh+en: lite-zh's multilingual text tower learns "
                   "from the Chinese and the English captions of each photo (the default "
                   "lite-zh weights).")
@click.option("--epochs", default=40, show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True,
              help="Seeds the initial heads and each epoch's shuffling and dropout.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the head weights (default: heads.safetensors in the run "
                   "folder, runs/train-heads-TOWER-LANG); never inside the installed package.")
def train_heads_command(tower, data_root, language, train_language, epochs, batch_size, lr,
                        seed, out) -> None:
    """Train a tower's heads from scratch on Flickr8K-CN train (frozen towers, InfoNCE),
    best epoch by val Rsum; writes them and a tower config that loads them into
    runs/train-heads-TOWER-LANG (or --out), never over the shipped weights."""
    from crossmodal.models.towers import find_tower_config
    from crossmodal.storage import atomic_save_json, atomic_write
    from crossmodal.train.config import TrainConfig
    from crossmodal.train.finetune_checks import refuse_package_path
    from crossmodal.train.run import run_training

    tower_config = find_tower_config(tower)
    run_dir = Path("runs") / f"train-heads-{tower_config.name}-{language}"
    out = Path(out) if out else run_dir / "heads.safetensors"
    refuse_package_path(out)
    refuse_package_path(run_dir)
    root = Path(data_root).resolve()
    config = TrainConfig.from_dict({
        "model": f"towers:{tower}", "fresh_heads": True, "seed": seed,
        "train_data": f"flickr8k-cn:{root}:train:{train_language or language}",
        "val_data": f"flickr8k-cn:{root}:val:{language}",
        "output_dir": str(run_dir),
        "stages": [{"name": "heads", "losses": {"infonce": 1.0}, "lr": lr,
                    "max_epochs": epochs, "batch_size": batch_size}],
    })
    result = run_training(config, resume=False)
    best = (Path(config.output_dir) / "best.safetensors").read_bytes()
    atomic_write(out, lambda handle: handle.write(best))
    atomic_save_json(out.with_suffix(".json"), {**result, "config": config.to_dict()})
    click.echo(json.dumps({"weights": str(out), "model": result["model"], "val": result["val"]},
                          indent=1))


@click.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Training config (TOML or JSON): model, data, stages; see configs/.")
@click.option("--no-resume", is_flag=True, help="Start over even if a checkpoint exists.")
def train_command(config_path: Path, no_resume: bool) -> None:
    """Staged training (losses, freezing, schedule per stage), best heads and fine-tuned
    blocks kept by val Rsum. Several processes: torchrun --nproc-per-node N --no-python
    crossmodal train --config ... (gloo on CPU, nccl on GPU)."""
    from crossmodal.train.run import load_and_run

    result = load_and_run(config_path, resume=not no_resume)
    if not result:  # a torchrun process other than rank 0: rank 0 reports
        return
    val = result["val"]
    skipped = result.get("skipped", {})
    if any(skipped.values()):
        click.echo(f"skipped bad items (unreadable images, empty captions): {skipped}")
    click.echo(f"best val Rsum {val['rsum']:.1f} (stage {result['stage']}, epoch "
               f"{result['epoch']}); use it as --model {result['model']}")


COMMANDS = [train_heads_command, train_command]
