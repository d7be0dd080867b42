"""One small registry for everything chosen by name (model backends, backbones, teachers,
stores, losses, dataset formats, trainers, exporters, evaluators; `crossmodal.extensions`
lists them all): built-ins register in code, third-party packages through an entry-point group
(as timm's `register_model` and llm's plugins), e.g. in a plugin's pyproject.toml:

    [project.entry-points."crossmodal.backends"]
    mymodel = "mypackage.crossmodal_plugin:load"

Entry points are listed on the first lookup of a name not registered in code, and imported
only when their name is used, so a broken plugin breaks only itself. A built-in name wins
over a plugin's; registering a name again warns, since it silently changed what ran before.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, MutableMapping
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

from crossmodal.errors import UnknownModelError

T = TypeVar("T")


class Registry(MutableMapping[str, T]):
    """name -> value (usually a factory); `registry[name] = value` registers it."""

    def __init__(self, kind: str, group: str):
        self.kind = kind  # what a value is, for messages: "model backend", "teacher", ...
        self.group = group  # the entry-point group third-party packages register in
        self._entries: dict[str, T] = {}
        self._plugins: dict[str, EntryPoint] | None = None  # listed, not yet imported

    def register(self, name: str, value: T) -> T:
        old = self._entries.get(name)
        if old is not None and old is not value:
            warnings.warn(f"{self.kind} '{name}' registered again: {value!r} replaces {old!r}",
                          RuntimeWarning, stacklevel=3)
        self._entries[name] = value
        return value

    def _discovered(self) -> dict[str, EntryPoint]:
        if self._plugins is None:
            self._plugins = {}
            for point in sorted(entry_points(group=self.group), key=lambda p: p.name):
                if point.name in self._entries:
                    warnings.warn(f"{self.kind} '{point.name}' of the entry point {point.value} "
                                  f"is ignored: crossmodal has its own '{point.name}'",
                                  RuntimeWarning, stacklevel=4)
                    continue
                self._plugins.setdefault(point.name, point)
        return self._plugins

    def _load(self, point: EntryPoint) -> T:
        try:
            value = point.load()
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code at import
            raise UnknownModelError(f"the {self.kind} '{point.name}' of the entry point "
                                    f"{point.value} ({self.group}) failed to load: {exc}") from exc
        self._entries[point.name] = value
        return value

    def __getitem__(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        point = self._discovered().get(name)
        if point is None:
            raise KeyError(name)
        return self._load(point)

    def __setitem__(self, name: str, value: T) -> None:
        self.register(name, value)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._discovered()

    def __iter__(self) -> Iterator[str]:
        """Names in registration order, then plugins' names (not imported)."""
        names = list(self._entries)
        return iter(names + [n for n in self._discovered() if n not in self._entries])

    def __len__(self) -> int:
        return sum(1 for _ in self)
