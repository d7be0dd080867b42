"""One registry: a model id names its backend and everything needed to rebuild it.

    towers:<name or config.json>       composed offline dual encoders (e.g. towers:lite-en),
                                       run by ONNX Runtime (CROSSMODAL_RUNTIME=torch: PyTorch)
    hf:<hub id or local dir>           transformers CLIP / ChineseCLIP / AltCLIP / SigLIP
    open_clip:<arch>/<pretrained>      open_clip models (optional extra)
    onnx:<export folder>               a towers:/hf: CLIP export run by ONNX Runtime
    fusion:<id>+<id> or fusion:<file>  several models as one (weighted concatenation); the
                                       default model, fusion:bilingual, is a shipped one

Backends register a loader; third-party packages add prefixes with `register_backend` or an
entry point in the group `crossmodal.backends` (name: the prefix; value: the loader).

A model folder (crossmodal-model.json inside, as `crossmodal finetune --out` writes) is an id
too: it names one of the above with paths relative to the folder (models/model_folder.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from crossmodal.errors import UnknownModelError
from crossmodal.models.defaults import DEFAULT_MODEL, DEFAULT_TOWER  # noqa: F401 - re-exported
from crossmodal.models.protocol import Encoder
from crossmodal.registry import Registry

_BACKENDS: Registry[Callable[[str, str], Encoder]] = Registry("model backend",
                                                              "crossmodal.backends")


def register_backend(prefix: str, loader: Callable[[str, str], Encoder]) -> None:
    """`loader(name_after_prefix, full_model_id)` returns an Encoder; registering a prefix
    again warns (it replaces the loader)."""
    _BACKENDS.register(prefix, loader)


def _load_towers(name: str, model_id: str) -> Encoder:
    from crossmodal.models.towers.config import find_tower_config

    return _towers_encoder(find_tower_config(name), model_id)


def load_tower_variant(model_id: str, image: dict) -> Encoder:
    """A towers: model with entries of its image table replaced (e.g. {"tta": "none"}), as a
    fusion member may ask; the fingerprint follows the changed config. Not cached."""
    from dataclasses import replace

    from crossmodal.models.towers.config import find_tower_config

    prefix, name = split_model_id(model_id)
    if prefix != "towers":
        raise UnknownModelError(f"only a towers: model takes image settings, not {model_id}")
    config = find_tower_config(name)
    return _towers_encoder(replace(config, image={**config.image, **image}), model_id)


def _towers_encoder(config, model_id: str) -> Encoder:
    """ONNX Runtime by default (graphs exported on first use), PyTorch when forced."""
    from crossmodal.models.towers.onnx_towers import TowersOnnxEncoder, log, requested_runtime

    requested = requested_runtime()
    if requested == "torch":
        from crossmodal.models.towers.encoder import TowersEncoder

        log.info("runtime: PyTorch for %s (CROSSMODAL_RUNTIME=torch)", model_id)
        return TowersEncoder(config, model_id=model_id)
    forced = requested == "onnx"  # then the text path too, whatever the CPU
    return TowersOnnxEncoder(config, model_id=model_id, text_runtime="onnx" if forced else None)


def _load_hf(name: str, model_id: str) -> Encoder:
    from crossmodal.models.hf import HFEncoder

    return HFEncoder(name, model_id=model_id)


def _load_open_clip(name: str, model_id: str) -> Encoder:
    from crossmodal.models.openclip import OpenCLIPEncoder

    return OpenCLIPEncoder(name, model_id=model_id)


def _load_onnx(name: str, model_id: str) -> Encoder:
    from crossmodal.models.onnx.runtime import OnnxEncoder

    return OnnxEncoder(name, model_id=model_id)


def _load_fusion(name: str, model_id: str) -> Encoder:
    from crossmodal.models.fusion import FusionEncoder

    return FusionEncoder(name, model_id, load_encoder, load_tower_variant)


register_backend("towers", _load_towers)
register_backend("hf", _load_hf)
register_backend("open_clip", _load_open_clip)
register_backend("onnx", _load_onnx)
register_backend("fusion", _load_fusion)


def split_model_id(model_id: str) -> tuple[str, str]:
    """(prefix, name) of a model id; a model folder gives those of the model it holds."""
    from crossmodal.models.model_folder import is_model_folder, read_model_folder

    if is_model_folder(model_id):
        model_id = read_model_folder(model_id)[0]
    prefix, sep, name = model_id.partition(":")
    if not sep or not name or prefix not in _BACKENDS:
        raise UnknownModelError(
            f"unknown model '{model_id}': use one of {', '.join(p + ':…' for p in _BACKENDS)}, "
            f"or a model folder, e.g. {DEFAULT_MODEL} (see `crossmodal models`)"
        )
    return prefix, name


@lru_cache(maxsize=4)
def load_encoder(model_id: str = DEFAULT_MODEL) -> Encoder:
    """Load (and cache per process) the encoder a model id names."""
    from crossmodal.models.model_folder import is_model_folder, read_model_folder
    from crossmodal.threads import apply_threads

    if is_model_folder(model_id):  # the folder's absolute path names its vectors
        model_id = read_model_folder(model_id)[1]
    prefix, name = split_model_id(model_id)
    apply_threads()  # the one thread setting, before any pool starts
    encoder = _BACKENDS[prefix](name, model_id)
    apply_threads()  # again for torch, when the backend has just imported it
    return encoder


def available_models() -> list[str]:
    """Model ids to show a user: the default first, then the shipped towers and fusions."""
    from crossmodal.models.fusion import shipped_fusions
    from crossmodal.models.openclip import OPENAI_MODELS
    from crossmodal.models.towers import shipped_towers

    shipped = [f"towers:{t}" for t in shipped_towers()] + [f"fusion:{f}" for f in
                                                            shipped_fusions()]
    return [DEFAULT_MODEL] + [m for m in shipped if m != DEFAULT_MODEL] + [
        "hf:<hub id or local dir>", *(f"open_clip:{m}" for m in OPENAI_MODELS),
        "onnx:<export folder>", "fusion:<id>+<id>"
    ]
