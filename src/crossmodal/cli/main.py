"""Entry point: the click group, and errors printed as one actionable line."""

from __future__ import annotations

import logging
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


class _StderrLines(logging.Handler):
    """Runtime notes (which runtime runs, a first-use export) as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        # tqdm.write clears a progress bar that is showing and draws it again below the line.
        tqdm.write(record.getMessage(), file=sys.stderr)


def _show_runtime_lines() -> None:
    logger = logging.getLogger("crossmodal.runtime")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
    logger.setLevel(logging.INFO)


@click.group(cls=ErrorsAsMessages)
@click.version_option(package_name="crossmodal")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for every compute pool (ONNX Runtime, torch, faiss) "
                   "[default: CROSSMODAL_THREADS, else all usable cores].")
def cli(threads: int | None) -> None:
    """Image-text retrieval: index images and captions, search them in every direction."""
    from crossmodal.threads import choose_threads

    _show_runtime_lines()
    choose_threads(threads)


def _register() -> None:
    from crossmodal.cli import (
        demo,
        distributed_commands,
        duplicates_commands,
        eval_commands,
        finetune_commands,
        index_commands,
        mcp_commands,
        onnx_commands,
        plot_commands,
        search_commands,
        serve_commands,
        sts_commands,
        teacher_commands,
        train_commands,
    )

    for module in (index_commands, search_commands, eval_commands, demo, train_commands,
                   finetune_commands,
                   teacher_commands, serve_commands, distributed_commands, plot_commands,
                   onnx_commands, sts_commands, mcp_commands, duplicates_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


if __name__ == "__main__":  # python -m crossmodal.cli.main, as python -m crossmodal
    cli()
