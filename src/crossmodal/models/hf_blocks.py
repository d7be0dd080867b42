"""`hf:` CLIP-family towers as blocks, for training with the same stages, freezing policies
and cached activations as towers.

Per tower the blocks run from input to output, so "the top N blocks" means what it means for
towers: image [embeddings + pre-layernorm, encoder layers..., post-layernorm of [CLS]];
text [embeddings, encoder layers..., final layernorm (CLIP)], pooled at the end-of-text token
(CLIP) or [CLS] (ChineseCLIP). The heads are the model's own visual_projection and
text_projection; CLIP's logit_scale is left alone (our InfoNCE owns the temperature).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn


def _layer(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    out = layer(x, mask)
    return out[0] if isinstance(out, tuple) else out  # transformers 4.x layers give tuples


class HFVisionBlocks(nn.Module):
    """A CLIP-style vision transformer as blocks; run_blocks(pixels, 0) is its pooler output."""

    def __init__(self, vision_model: nn.Module):
        super().__init__()
        self.vision_model = vision_model  # state_dict keys match the full model's
        self.out_dim = int(vision_model.config.hidden_size)

    def blocks(self) -> list[nn.Module]:
        m = self.vision_model
        return [nn.ModuleList([m.embeddings, m.pre_layrnorm]), *m.encoder.layers,
                m.post_layernorm]

    def run_blocks(self, x: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        """blocks[start:stop] on `x` (pixels when start is 0, else (n, tokens, hidden))."""
        m = self.vision_model
        count = len(m.encoder.layers) + 2
        stop = count if stop is None else stop
        for index in range(start, stop):
            if index == 0:
                x = m.pre_layrnorm(m.embeddings(x))
            elif index == count - 1:
                x = m.post_layernorm(x[:, 0])
            else:
                x = _layer(m.encoder.layers[index - 1], x, None)
        if stop == count - 1 and start < stop:  # only [CLS] goes on: a 50-200x smaller cache
            x = x[:, :1]
        return x


class HFTextBlocks(nn.Module):
    """A CLIP (causal, end-of-text pooled) or BERT-style (ChineseCLIP, [CLS]) text tower."""

    def __init__(self, text_model: nn.Module, tokenize: Callable, causal: bool):
        super().__init__()
        self.text_model = text_model  # state_dict keys match the full model's
        self._tokenize, self.causal = tokenize, causal
        self.out_dim = int(text_model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self._tokenize(texts)

    def _layers(self) -> nn.ModuleList:
        encoder = self.text_model.encoder
        return encoder.layers if hasattr(encoder, "layers") else encoder.layer

    def blocks(self) -> list[nn.Module]:
        tail = [self.text_model.final_layer_norm] if self.causal else []
        return [self.text_model.embeddings, *self._layers(), *tail]

    def run_blocks(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                   stop: int | None = None) -> torch.Tensor:
        """blocks[start:stop] on a right-padded batch (token ids when start is 0); past the
        last block the tokens are pooled as the model's get_text_features pools them."""
        layers = self._layers()
        count = len(layers) + 1 + int(self.causal)
        stop = count if stop is None else stop
        allowed = mask[:, None, None, :].bool()
        if self.causal:
            length = mask.shape[1]
            allowed = allowed & torch.ones(length, length, dtype=torch.bool).tril()
        additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        for index in range(start, stop):
            if index == 0:
                x = self.text_model.embeddings(input_ids=x)
            elif index <= len(layers):
                x = _layer(layers[index - 1], x, additive)
            else:
                x = self.text_model.final_layer_norm(x)
        if stop < count:
            return x
        if not self.causal:
            return x[:, 0]
        # The end-of-text token closes every caption, truncated ones too (the tokenizers
        # append it after truncation): the last unpadded position.
        last = mask.sum(dim=1).long() - 1
        return x[torch.arange(len(x)), last]


class HFHeads(nn.Module):
    """The model's own projections, as the trainer's heads (trained in place)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.image, self.text = model.visual_projection, model.text_projection
        self.dim = int(self.text.out_features)

    def reset(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.image.reset_parameters()
        self.text.reset_parameters()

    def save(self, path: Path) -> None:
        from crossmodal.storage import atomic_save_safetensors

        atomic_save_safetensors(Path(path), self.state_dict())
