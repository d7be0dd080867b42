"""`--watch`: follow a folder into an index (`crossmodal index DIR --watch`, and
`crossmodal serve IDX --watch DIR` in a thread beside the server). One line per applied
batch, printed after its commit: what it names is durable."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click


def require_watchable(inputs, ray: str | None = None) -> Path:
    """The one folder --watch follows, or one clear line saying why not."""
    from crossmodal.errors import BadInputError

    if ray:
        raise BadInputError("--watch and --ray do not go together: watch a folder without "
                            "--ray")
    if len(inputs) != 1:
        raise BadInputError("--watch follows one folder: give exactly one DIR")
    folder = Path(inputs[0]).expanduser()
    if not folder.is_dir():
        raise BadInputError(f"--watch needs a folder: {folder} is not one")
    return folder


def batch_lines(report, first: bool, verbose: bool) -> list[str]:
    """The line for one batch (and with `verbose`, one per id it changed)."""
    counts = (f"{len(report.added)} added, {len(report.updated)} updated, "
              f"{len(report.removed)} removed, {len(report.renamed)} renamed, "
              f"{len(report.skipped)} skipped")
    lines = [f"{time.strftime('%H:%M:%S')} {'caught up' if first else 'applied'}: {counts}"]
    if verbose:
        lines += [f"  + {i}" for i in report.added] + [f"  ~ {i}" for i in report.updated]
        lines += [f"  - {i}" for i in report.removed]
        lines += [f"  > {old} -> {new}" for old, new in report.renamed]
    return lines


def printer(verbose: bool, err: bool = False):  # noqa: ANN201 - a callback
    """on_batch for FolderWatch: the startup rescan's line always, then a line per batch
    that changed something (an editor's swap file that came and went prints nothing)."""
    first = [True]

    def on_batch(report) -> None:
        if first[0] or report.changed:
            # One write, flushed by click.echo: a batch's lines come out whole or not at all.
            click.echo("\n".join(batch_lines(report, first[0], verbose)), err=err)
            _print_skips(report.skipped, verbose)
        first[0] = False
    return on_batch


def _print_skips(skipped: list[tuple[str, str]], verbose: bool, listed: int = 5) -> None:
    """A batch's skipped files, each with why (the first few, all with `verbose`)."""
    shown = skipped if verbose else skipped[:listed]
    for path, why in shown:
        # A name with a newline or tab (or undecodable bytes) is shown escaped.
        click.echo(f"  skipped {path if path.isprintable() else ascii(path)}: {why}", err=True)
    if len(skipped) > len(shown):
        click.echo(f"  ... and {len(skipped) - len(shown)} more skipped (--verbose lists "
                   "them)", err=True)


@contextmanager
def _stop_on_signals(watch):  # noqa: ANN001
    """Ctrl-C (or SIGTERM) stops after the batch being applied is committed; a second
    Ctrl-C interrupts at once (the index stays whole: commits are crash-safe)."""
    def stop(signum, frame) -> None:  # noqa: ANN001
        click.echo("stopping (Ctrl-C again to stop at once)...", err=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        watch.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _note_polling(watch) -> None:  # noqa: ANN001
    if watch.polling:
        click.echo("note: the system allows no more file watches (fs.inotify.max_user_watches)"
                   ": polling the folder every second instead", err=True)


def follow(collection, folder: Path, batch_size: int, verbose: bool,
           caption_files=()) -> None:  # noqa: ANN001
    """Follow `folder` into `collection` in this thread until Ctrl-C; `caption_files`
    (--captions) are read once, and apply to files as they come."""
    from crossmodal.collection.watch import FolderWatch

    watch = FolderWatch(collection, folder, printer(verbose), batch_size=batch_size,
                        caption_files=caption_files)
    with _stop_on_signals(watch):
        watch.start()
        _note_polling(watch)
        click.echo(f"watching {folder} (Ctrl-C stops)", err=True)
        watch.run()
    click.echo(f"stopped watching {folder}", err=True)


def follow_in_background(index: Path, folder: Path, encoder) -> threading.Thread:  # noqa: ANN001
    """`serve --watch`: the folder followed in a thread of its own, through a Collection
    of its own (another writer of the folder, as `crossmodal index` in another process
    would be: the server follows its commits, and its uploads take the folder's lock in
    turn). The thread stops with the process; a failure ends the watch, not the server."""
    from crossmodal.collection.collection import Collection
    from crossmodal.collection.watch import FolderWatch
    from crossmodal.errors import CrossmodalError

    collection = Collection.open(index, encoder=encoder)
    watch = FolderWatch(collection, folder, printer(verbose=False, err=True))
    watch.start()
    _note_polling(watch)

    def run() -> None:
        try:
            watch.run()
        except CrossmodalError as exc:
            click.echo(f"error: {exc}", err=True)
        except Exception as exc:  # noqa: BLE001 - said once; the server goes on serving
            click.echo(f"error: watching {folder} stopped: {exc!r}", err=True)

    thread = threading.Thread(target=run, name="crossmodal-watch", daemon=True)
    thread.stop = watch.stop  # type: ignore[attr-defined]
    thread.start()
    return thread
