"""MkDocs hook: the HTTP API reference, rendered from the OpenAPI schema at build time.

`<!-- openapi -->` on a page becomes one section per route (method, path, summary, parameters,
request body, responses), read from the schema of the app that `crossmodal serve` runs:
`crossmodal.serve.create_app`, built offline. The app factory opens an index; for the schema
no index is needed, so the live collection is replaced by a stand-in while the app is built.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

MARKER = "<!-- openapi -->"


class _NoIndex:
    """Stands in for LiveCollection: the routes only use it when a request comes (but for the
    model's image size, read once when the routes are built)."""

    def __init__(self, *args, **kwargs) -> None:
        self.encoder = SimpleNamespace(preprocessing=SimpleNamespace(size=224))


def openapi_schema() -> dict:
    from crossmodal.serve import app as app_module

    with mock.patch.object(app_module, "LiveCollection", _NoIndex):
        app = app_module.create_app("no-index")
    return app.openapi()


def _ref_name(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list of {_ref_name(schema.get('items', {}))}"
    if "anyOf" in schema:
        return " or ".join(_ref_name(option) for option in schema["anyOf"])
    return schema.get("type", "object")


def _parameters(operation: dict) -> list[str]:
    if not operation.get("parameters"):
        return []
    lines = ["| parameter | in | type | required | description |",
             "| --- | --- | --- | --- | --- |"]
    for p in operation["parameters"]:
        lines.append(f"| `{p['name']}` | {p['in']} | {_ref_name(p.get('schema', {}))} | "
                     f"{'yes' if p.get('required') else 'no'} | "
                     f"{p.get('description', '').replace(chr(10), ' ')} |")
    return ["", *lines]


def _body(operation: dict) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    return [f"\n**Body** ({kind}): `{_ref_name(spec.get('schema', {}))}`"
            for kind, spec in content.items()]


def _responses(operation: dict) -> list[str]:
    lines = ["", "| status | meaning | body |", "| --- | --- | --- |"]
    for status, response in operation.get("responses", {}).items():
        schema = next(iter(response.get("content", {}).values()), {}).get("schema", {})
        lines.append(f"| {status} | {response.get('description', '')} | "
                     f"{'`' + _ref_name(schema) + '`' if schema else '–'} |")
    return lines


def _schemas(components: dict) -> list[str]:
    lines = ["## Schemas", ""]
    for name, schema in sorted(components.get("schemas", {}).items()):
        lines += [f"### `{name}`", ""]
        if schema.get("description"):
            lines += [schema["description"], ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            lines += ["| field | type | required | description |", "| --- | --- | --- | --- |"]
            lines += [f"| `{field}` | {_ref_name(spec)} | {'yes' if field in required else 'no'}"
                      f" | {spec.get('description', spec.get('title', '')).replace(chr(10), ' ')} |"
                      for field, spec in properties.items()]
            lines.append("")
    return lines


def render(schema: dict) -> str:
    lines = [f"Generated from the OpenAPI schema of `crossmodal serve` ({schema['info']['title']}, "
             f"API version {schema['info']['version']}, OpenAPI {schema['openapi']}). A running "
             "server serves the same schema at `/openapi.json`.", ""]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            lines += [f"## `{method.upper()} {path}`", ""]
            summary = operation.get("summary", "")
            description = operation.get("description", "")
            lines += [f"**{summary}**" if summary else "", "", description]
            lines += _parameters(operation) + _body(operation) + _responses(operation) + [""]
    lines += _schemas(schema.get("components", {}))
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs hook
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(openapi_schema()))


if __name__ == "__main__":  # the schema itself, for a look: python docs/_hooks/openapi.py
    print(json.dumps(openapi_schema(), indent=1))
