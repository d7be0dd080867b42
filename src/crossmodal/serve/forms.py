"""Form fields in the charset they were sent in, or a 400: never a silent Latin-1 guess.

Starlette decodes a multipart text field that is not valid UTF-8 (or the charset the request
names) as Latin-1, so a caption sent in another encoding would be stored as mojibake. The
API's routes parse forms with a parser that refuses such a field instead, as the CLI refuses
a caption file that is not UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser


class _StrictTextParser(MultiPartParser):
    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:  # a text field: Starlette would fall back to Latin-1
            try:
                bytes(part.data).decode(self._charset)
            except UnicodeDecodeError as exc:
                raise MultiPartException(
                    f"form field '{part.field_name}' is not {self._charset} text (byte "
                    f"0x{part.data[exc.start]:02x} at {exc.start}): send it as UTF-8") from None
        super().on_part_end()


class _StrictFormRequest(Request):
    async def _get_form(self, *, max_files: int | float = 1000, max_fields: int | float = 1000,
                        max_part_size: int = 1024 * 1024) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is None and content_type == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    self._form = await _StrictTextParser(
                        self.headers, stream, max_files=max_files, max_fields=max_fields,
                        max_part_size=max_part_size).parse()
            except MultiPartException as exc:
                raise HTTPException(status_code=400, detail=exc.message) from None
        return await super()._get_form(max_files=max_files, max_fields=max_fields,
                                       max_part_size=max_part_size)


class StrictFormRoute(APIRoute):
    """An API route whose multipart text fields must decode in their charset (400 if not)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictFormRequest(request.scope, request.receive))

        return strict_handler
