"""Options that more than one command module takes: one meaning (and one default model)
wherever a command names a dataset or a model."""

from __future__ import annotations

from collections.abc import Callable

import click

from crossmodal.models.registry import DEFAULT_MODEL


def with_options(command: Callable, options: list[Callable]) -> Callable:
    """`command` decorated by `options`, shown in --help in the order given."""
    for option in reversed(options):
        command = option(command)
    return command


def model_option(required: bool = False, dest: str = "model", help: str | None = None,
                 default: str = DEFAULT_MODEL) -> Callable:
    """--model: a model id, required or defaulting to the registry's default model (or to
    `default`, e.g. DEFAULT_TOWER where only one tower will do)."""
    text = help or f"Model id, e.g. {DEFAULT_MODEL}."
    if required:
        return click.option("--model", dest, required=True, help=text)
    return click.option("--model", dest, default=default, show_default=True, help=text)


def data_options() -> list[Callable]:
    """--data, --split, --language: one meaning wherever a command names a dataset."""
    return [
        click.option("--data", "data", required=True,
                     help="Dataset: 'flickr8k-cn:ROOT', a JSON/TOML dataset spec file, or "
                          "FORMAT:PATH (see README, Datasets)."),
        click.option("--split", default=None, help="Split (default: the spec's, or val)."),
        click.option("--language", default=None, help="Caption language (en, zh)."),
    ]


def quiet_option() -> Callable:
    return click.option("--quiet", is_flag=True, help="No progress bars.")


def load_data(data: str, split: str | None, language: str | None):
    """The dataset that --data, --split and --language name."""
    from crossmodal.data.registry import load_dataset

    overrides = {k: v for k, v in (("split", split), ("language", language)) if v}
    return load_dataset(data, **overrides)
