"""`crossmodal serve`: the HTTP API and search page over one index."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.cli.targets import INDEX_TARGET


@click.command("serve")
@click.argument("index", type=INDEX_TARGET)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token", envvar="CROSSMODAL_TOKEN", default=None,
              help="Bearer token clients must send (or set CROSSMODAL_TOKEN).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow browser calls from this origin (repeatable). Default: CORS off.")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Also answer requests for this Host name (repeatable), e.g. the name a "
                   "reverse proxy serves; others are refused (no DNS rebinding).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True,
              help="Believe X-Forwarded-For/-Proto only from this proxy address or network "
                   "(repeatable). Default: the headers are ignored.")
@click.option("--rate-limit", default=20.0, show_default=True, type=click.FloatRange(0),
              help="Requests per second per client address after a burst of 100; 0: off.")
@click.option("--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(0.01),
              help="Largest request body (uploads) in MB.")
@click.option("--read-only", is_flag=True, help="No adding or removing items over HTTP.")
@click.option("--uploads-dir", default=None,
              help="Where uploaded images are kept: a folder inside the index folder "
                   "(default uploads), or for a Milvus collection a folder every replica "
                   "shares (default ./uploads).")
@click.option("--log-level", "log_level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="Server log level.")
@click.option("--watch", "watch_dir", default=None, type=click.Path(path_type=Path),
              metavar="DIR",
              help="Also follow DIR into the index as it changes (as `crossmodal index DIR "
                   "--watch` would, beside the server's own uploads).")
@click.option("--ocr", is_flag=True,
              help="Read the text in each uploaded photo and index it as its captions, as "
                   "`crossmodal index --ocr` does. Needs pip install 'crossmodal[ocr]'.")
def serve_command(index, host, port, token, cors_origins, allowed_hosts, trusted_proxies,
                  rate_limit, max_body_mb, read_only, uploads_dir, log_level, watch_dir,
                  ocr) -> None:
    """Serve INDEX over HTTP: a search page at / and the API under /api (docs at /docs)."""
    from crossmodal.data.ocr import require_ocr
    from crossmodal.errors import missing_dependency

    if watch_dir is not None:
        from crossmodal.cli.watching import require_watchable
        from crossmodal.collection.targets import is_collection_uri
        from crossmodal.errors import BadInputError

        if is_collection_uri(index):
            raise BadInputError("--watch follows a folder into an index folder; for a Milvus "
                                "collection, run `crossmodal index DIR --into URI` again")

        require_watchable([watch_dir])  # a mistyped folder: one line, before the model loads
    if ocr:
        require_ocr()  # one line, before the index and model load

    try:
        import uvicorn

        from crossmodal.serve import ServeSettings, create_app
    except ImportError as exc:
        raise missing_dependency(exc.name or "fastapi", "serve") from exc

    _require_free_port(host, port)  # before the index and model load: seconds
    settings = ServeSettings(host=host, port=port, token=token, cors_origins=tuple(cors_origins),
                             allowed_hosts=tuple(allowed_hosts),
                             trusted_proxies=tuple(trusted_proxies), rate_per_second=rate_limit,
                             max_body_bytes=int(max_body_mb * 1024 * 1024),
                             allow_writes=not read_only, ocr=ocr,
                             **({"uploads_dir": uploads_dir} if uploads_dir else {}))
    app = create_app(index, settings)
    with app.state.live.reading() as collection:
        stats = collection.stats()
    click.echo(f"serving {stats['items']} items of {index} ({stats['model']}) at "
               f"http://{host}:{port}/  (API docs: /docs)", err=True)
    watcher = None
    if watch_dir is not None:
        from crossmodal.cli.watching import follow_in_background

        watcher = follow_in_background(index, watch_dir.expanduser(), app.state.live.encoder)
        click.echo(f"watching {watch_dir}", err=True)
    try:
        uvicorn.run(app, log_level=log_level, **uvicorn_options(settings))
    finally:
        if watcher is not None:
            watcher.stop()
            watcher.join(timeout=10)  # a batch being committed finishes; embedding may not


def _require_free_port(host: str, port: int) -> None:
    """One `error:` line for a port in use or an address this machine does not have, in
    place of uvicorn's log lines (bound as uvicorn binds: SO_REUSEADDR)."""
    import errno
    import socket

    from crossmodal.errors import BadInputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInputError(
                    f"port {port} on {host} is in use (another `crossmodal serve`?): stop it, "
                    f"or pass --port {port + 1}") from None
            raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def uvicorn_options(settings) -> dict:
    """uvicorn's settings for `settings`: proxy headers are believed only from named proxies
    (uvicorn's own default trusts them from 127.0.0.1, so any local client could pick its
    rate-limit bucket and the address in the log)."""
    options = {"host": settings.host, "port": settings.port, "server_header": False,
               "proxy_headers": bool(settings.trusted_proxies)}
    if settings.trusted_proxies:
        options["forwarded_allow_ips"] = list(settings.trusted_proxies)
    return options


COMMANDS = [serve_command]
