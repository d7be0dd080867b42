"""`crossmodal mcp`: the index as a Model Context Protocol server, for agents (stdio)."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.cli.targets import INDEX_TARGET


@click.command("mcp")
@click.argument("index", type=INDEX_TARGET)
def mcp_command(index: Path | str) -> None:
    """Serve INDEX to an MCP client over stdin/stdout (read-only): tools search_text,
    search_image, search_like and get_item. Needs the mcp extra."""
    from crossmodal.errors import MissingDependencyError

    try:
        import mcp  # noqa: F401 (the SDK: fail here with one line, not in the server)
    except ImportError:
        raise MissingDependencyError(
            "the MCP server needs the mcp SDK: pip install 'crossmodal[mcp]'") from None
    from crossmodal.mcp.server import run_stdio

    run_stdio(index)


COMMANDS = [mcp_command]
