"""Entry point: the click group, and errors printed as one actionable line."""

from __future__ import annotations

import sys

import click

from crossmodal.errors import CrossmodalError


class ErrorsAsMessages(click.Group):
    """Known errors become `error: ...` and exit code 2, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CrossmodalError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=ErrorsAsMessages)
@click.version_option(package_name="crossmodal")
def cli() -> None:
    """Image-text retrieval: index images and captions, search them in every direction."""


def _register() -> None:
    from crossmodal.cli import (
        demo,
        distributed_commands,
        eval_commands,
        index_commands,
        onnx_commands,
        plot_commands,
        search_commands,
        serve_commands,
        teacher_commands,
        train_commands,
    )

    for module in (index_commands, search_commands, eval_commands, demo, train_commands,
                   teacher_commands, serve_commands, distributed_commands, plot_commands,
                   onnx_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
