"""Tiny random transformers dual encoders (CLIP, Chinese-CLIP, AltCLIP, SigLIP) and their
tokenizers, built on disk for the hf:, onnx: and training tests (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers as tf
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import load_encoder

WORDS = ["a", "red", "square", "green", "field", "deep", "blue", "sea", "photo", "of", "cat",
         "dog", "红", "色", "的", "猫"]
TEXTS = ["a red square", "green field", "deep blue sea photo of a cat", "红 色 的 猫"]
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=32, patch_size=8)
# initializer_range: at BERT's 0.02 random [CLS] poolers give nearly one vector for all texts
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=24, initializer_range=0.5)
# kind -> (context length the encoder must derive, special tokens added to each text)
KINDS = {"clip": (24, 2), "chinese_clip": (20, 2), "altclip": (23, 2), "siglip": (16, 1),
         "siglip2": (16, 1)}


def save_word_tokenizer(folder: Path, bos: str | None, pieces=WORDS) -> dict[str, int]:
    """A WordLevel tokenizer ('<s> words </s>', or 'words </s>' for SigLIP) with no length limit."""
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *pieces])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    template = f"{bos} $A </s>" if bos else "$A </s>"
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<s>", 2), ("</s>", 3)])
    tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                               bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    return vocab


def build(kind: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random `kind` dual encoder (projection 16) and its tokenizer into folder."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "chinese_clip":  # BERT WordPiece from a vocab.txt, like the real checkpoints
        (folder / "vocab.txt").write_text(
            "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
        tf.BertTokenizer(str(folder / "vocab.txt"), model_max_length=20).save_pretrained(folder)
        config = tf.ChineseCLIPConfig(text_config=dict(TEXT, vocab_size=32), vision_config=VISION,
                                      projection_dim=16)
        model = tf.ChineseCLIPModel(config)
    elif kind in ("siglip", "siglip2"):
        # transformers rebuilds a SigLIP2 tokenizer as Gemma's BPE (' ' -> '▁') from our vocab:
        # without merges it splits into characters, so give it those
        chars = sorted(set("".join(TEXTS).replace(" ", "▁")))
        vocab = save_word_tokenizer(folder, None, chars if kind == "siglip2" else WORDS)
        text = dict(TEXT, vocab_size=len(vocab), max_position_embeddings=16, projection_size=16)
        vision = dict(VISION, hidden_size=16, intermediate_size=32)
        if kind == "siglip":
            model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision))
        else:  # naflex: a patch budget instead of an image size
            vision = {k: v for k, v in vision.items() if k != "image_size"} | {"num_patches": 16}
            model = tf.Siglip2Model(tf.Siglip2Config(text_config=text, vision_config=vision))
    else:
        vocab = save_word_tokenizer(folder, bos="<s>")
        text = dict(TEXT, vocab_size=len(vocab), pad_token_id=0, bos_token_id=2, eos_token_id=3)
        if kind == "clip":
            model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=VISION,
                                               projection_dim=16))
        else:
            model = tf.AltCLIPModel(tf.AltCLIPConfig(text_config=dict(text, project_dim=16),
                                                     vision_config=VISION, projection_dim=16))
    model.save_pretrained(folder)
    return folder


def load(folder: Path | str) -> Encoder:
    load_encoder.cache_clear()
    try:
        return load_encoder(f"hf:{folder}")
    finally:
        load_encoder.cache_clear()


def photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    return [Image.new("RGB", (40, 30), (250, 10, 10)), Image.new("RGB", (20, 50), (10, 10, 250)),
            Image.new("L", (32, 32), 128), noise]
