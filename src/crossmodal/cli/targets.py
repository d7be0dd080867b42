"""The INDEX argument of the commands: an index folder (a Path) or a Milvus collection's
address (kept as written: a Path would fold `milvus://` into `milvus:/`)."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.collection.targets import is_collection_uri


class IndexTarget(click.ParamType):
    name = "INDEX"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, Path) or is_collection_uri(value):
            return value
        return Path(value)


INDEX_TARGET = IndexTarget()
