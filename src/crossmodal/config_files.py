"""Config files as typed data: one JSON/TOML reader and one dataclass builder for every config
(training runs, tower configs, dataset specs, loss parameters).

`build(cls, data, where)` makes a dataclass from a parsed table, nested dataclasses and lists
of them included. Unknown keys are refused with their path (`head.grams.min_cout`), a value of
the wrong type with its path and the expected type, both as one-line `BadInputError`s. A field
can say what it must be in words: `field(metadata={"must_be": "a count >= 0"})`; a `dict` field
with `metadata={"schema": SomeDataclass}` is checked as that dataclass and kept as a dict (for
code and cache keys that read the table as written); `metadata={"internal": True}` is not
read from the file.
Own code rather than pydantic: pydantic's lax mode turns `true` into 1 and "3" into 3, its
strict mode refuses plain dicts for dataclasses, and it is not a core dependency.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from crossmodal.errors import BadInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as a package (pyproject pulls it in there)
    import tomli as tomllib

T = TypeVar("T")
TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              type(None): "empty"}


def read_config_file(path: str | Path, what: str = "config") -> object:
    """The parsed content of a .json or .toml file (BOMs allowed); bad syntax, a missing file
    or another suffix is a BadInputError naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise BadInputError(f"{path}: expected a .json or .toml config file ({what})")
    if not path.is_file():
        raise BadInputError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                            f"offset {exc.start}): save the file as UTF-8") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{path}: invalid TOML ({exc})") from exc


def _join(prefix: str, key: object) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _describe(kind: object) -> str:
    if kind in TYPE_WORDS:
        return TYPE_WORDS[kind]
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(kind))
    if origin is list or kind is list:
        return "a list"
    if origin is dict or kind is dict or is_dataclass(kind):
        return "a table"
    return getattr(kind, "__name__", str(kind))


def _is_container_for(kind: object, value: object) -> bool:
    table = is_dataclass(kind) or kind is dict or typing.get_origin(kind) is dict
    listing = kind is list or typing.get_origin(kind) is list
    return (table and isinstance(value, Mapping)) or (listing and isinstance(value, list))


def _convert(kind: Any, value: object, where: str, path: str, must_be: str | None) -> object:
    """`value` as `kind`, or a BadInputError saying what `path` must be."""

    def wrong() -> BadInputError:
        return BadInputError(f"{where}: {path} must be {must_be or _describe(kind)}, "
                             f"not {value!r}")

    if kind is Any:
        return value
    if is_dataclass(kind):
        return build(kind, value, where, path)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _convert(arg, value, where, path, must_be)
            except BadInputError as exc:
                if _is_container_for(arg, value):  # the arm meant: its inner error says more
                    raise exc from None
        raise wrong()
    if kind is bool or kind is str or kind is type(None):
        if not isinstance(value, kind):
            raise wrong()
        return value
    if kind is int or kind is float:  # a bool is an int to Python, never to a config
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float
                                                     else int):
            raise wrong()
        return kind(value)
    if origin is list or kind is list:
        if not isinstance(value, list):
            raise wrong()
        item = args[0] if args else Any
        return [_convert(item, v, where, _join(path, n), None) for n, v in enumerate(value, 1)]
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise wrong()
        key_kind, value_kind = args if args else (Any, Any)
        return {_convert(key_kind, k, where, _join(path, k), None):
                _convert(value_kind, v, where, _join(path, k), None) for k, v in value.items()}
    raise TypeError(f"config type {kind!r} of {path} is not supported")  # a bug, not input


def refuse_unknown(data: Mapping, known: list[str], where: str, path: str = "") -> None:
    """A BadInputError naming each key of `data` outside `known`, with its full path."""
    unknown = sorted(set(data) - set(known))
    if not unknown:
        return
    at = f" at {', '.join(_join(path, k) for k in unknown)}" if path else ""
    scope = f" in {path}" if path else ""
    raise BadInputError(f"{where}: unknown keys {unknown}{at} (known{scope}: "
                        f"{', '.join(sorted(known))})")


def build(cls: type[T], data: object, where: str, path: str = "") -> T:
    """An instance of the dataclass `cls` from the table `data` (see the module docstring)."""
    if not isinstance(data, Mapping):
        raise BadInputError(f"{where}: {path or 'the file'} must be a table, not {data!r}")
    hints = typing.get_type_hints(cls)
    init_fields = [f for f in fields(cls) if f.init and not f.metadata.get("internal")]
    refuse_unknown(data, [f.name for f in init_fields], where, path)
    values = {}
    for item in init_fields:
        here = _join(path, item.name)
        if item.name not in data:
            if item.default is MISSING and item.default_factory is MISSING:
                raise BadInputError(f"{where}: missing '{here}'")
            continue
        schema = item.metadata.get("schema")
        if schema is not None:  # checked against its dataclass, kept as the table it is
            build(schema, data[item.name], where, here)
            values[item.name] = dict(data[item.name])
            continue
        values[item.name] = _convert(hints[item.name], data[item.name], where, here,
                                     item.metadata.get("must_be"))
    return cls(**values)


def build_kwargs(function: Callable, data: object, where: str, path: str,
                 leave_out: tuple[str, ...] = ()) -> dict[str, object]:
    """`data` checked as keyword arguments of `function` (a class: its __init__) by their type
    hints; `leave_out` names the arguments that do not come from a config."""
    target = function.__init__ if inspect.isclass(function) else function
    hints = typing.get_type_hints(target)
    params = [name for name, p in inspect.signature(target).parameters.items()
              if name not in ("self", *leave_out)
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not isinstance(data, Mapping):
        raise BadInputError(f"{where}: {path} must be a table, not {data!r}")
    refuse_unknown(data, params, where, path)
    return {name: _convert(hints.get(name, Any), value, where, _join(path, name), None)
            for name, value in data.items()}
