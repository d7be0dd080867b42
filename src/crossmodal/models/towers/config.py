"""Tower configs are data (JSON): which backbones, which preprocessing, which head."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from crossmodal.errors import UnknownModelError

CONFIG_PACKAGE = "crossmodal.models.towers"


@dataclass
class TowersConfig:
    name: str
    image: dict
    text: dict
    head: dict
    weights: str | None = None  # safetensors path, relative to the config file
    # Fine-tuned backbone blocks (safetensors, keys "image.*" / "text.*") over the pretrained.
    backbone_weights: str | None = None
    description: str = ""
    source: Path | None = field(default=None, repr=False)

    def _resolve(self, value: str | None) -> Path | None:
        if not value:
            return None
        path = Path(value)
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path

    @property
    def weights_path(self) -> Path | None:
        return self._resolve(self.weights)

    @property
    def backbone_weights_path(self) -> Path | None:
        return self._resolve(self.backbone_weights)

    @classmethod
    def from_file(cls, path: Path) -> TowersConfig:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [key for key in ("name", "image", "text", "head") if key not in data]
        if missing:
            raise UnknownModelError(f"tower config {path} lacks the keys {missing}")
        return cls(**data, source=Path(path))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "image": self.image,
            "text": self.text,
            "head": self.head,
            "weights": self.weights,
            **({"backbone_weights": self.backbone_weights} if self.backbone_weights else {}),
        }


def _config_dir() -> Path:
    return Path(str(resources.files(CONFIG_PACKAGE) / "configs"))


def shipped_towers() -> list[str]:
    return sorted(p.stem for p in _config_dir().glob("*.json"))


def find_tower_config(name: str) -> TowersConfig:
    """`lite-en` (shipped) or a path to a JSON config (user-trained towers)."""
    candidate = Path(name)
    if candidate.suffix == ".json" or candidate.exists():
        if not candidate.is_file():
            raise UnknownModelError(f"tower config file not found: {name}")
        return TowersConfig.from_file(candidate)
    path = _config_dir() / f"{name}.json"
    if not path.is_file():
        raise UnknownModelError(
            f"unknown tower '{name}': shipped towers are {', '.join(shipped_towers())}, "
            "or pass the path of a tower JSON config"
        )
    return TowersConfig.from_file(path)
