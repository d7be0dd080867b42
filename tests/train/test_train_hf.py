"""`crossmodal train` on hf: CLIP / ChineseCLIP: tiny random models built here, the bundled
samples as data; the saved folder loads through the registry and scores what validation said."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from safetensors.torch import load_file

from crossmodal.data.registry import load_dataset
from crossmodal.errors import BadInputError
from crossmodal.evaluation.run import evaluate_model
from crossmodal.models.registry import load_encoder
from crossmodal.train.config import TrainConfig
from crossmodal.train.hf_parts import HFTrainable
from crossmodal.train.run import run_training
from crossmodal.train.trainer import StageTrainer
from tests.hf_helpers import VISION, build, save_word_tokenizer

SAMPLES = Path(str(resources.files("crossmodal") / "samples"))
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=40, initializer_range=0.5)


def captions(chinese: bool) -> list[tuple[Path, str]]:
    line = 1 if chinese else 0
    return [(path, path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()[line])
            for path in sorted(SAMPLES.glob("*.jpg"))]


def tiny(kind: str, folder: Path) -> Path:
    """A tiny random `kind` model whose vocabulary covers the sample captions (distinct
    token sequences, so no two captions tie in the rankings)."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "chinese_clip":  # BERT splits CJK into characters
        chars = sorted({c for _, text in captions(True) for c in text})
        (folder / "vocab.txt").write_text(
            "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")
        tf.BertTokenizer(str(folder / "vocab.txt"), model_max_length=32).save_pretrained(folder)
        model = tf.ChineseCLIPModel(tf.ChineseCLIPConfig(
            text_config=dict(TEXT, vocab_size=len(chars) + 5), vision_config=VISION,
            projection_dim=16))
    else:
        words = sorted({w for _, text in captions(False) for w in re.findall(r"\w+|[^\w\s]", text)})
        vocab = save_word_tokenizer(folder, "<s>", words)
        model = tf.CLIPModel(tf.CLIPConfig(
            text_config=dict(TEXT, vocab_size=len(vocab), pad_token_id=0, bos_token_id=2,
                             eos_token_id=3),
            vision_config=VISION, projection_dim=16))
    model.save_pretrained(folder)
    return folder


def pairs(tmp_path: Path, chinese: bool = False) -> dict:
    rows = ["image,caption"] + [f"{path},{text}" for path, text in captions(chinese)]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"format": "table", "path": str(tmp_path / "pairs.csv")}


HEADS = {"name": "heads", "losses": {"infonce": 1.0}, "max_epochs": 2, "batch_size": 4,
         "warmup": 1, "lr": 1e-2}
TOP = {"name": "top", "train_image_blocks": 2, "train_text_blocks": 1, "backbone_lr": 1e-2,
       "losses": {"infonce": 1.0, "instance": 1.0}, "max_epochs": 2, "batch_size": 4,
       "warmup": 1, "lr": 1e-2}


def config(model: Path, data: dict, out: Path, stages: list[dict], **extra) -> TrainConfig:
    return TrainConfig.from_dict({"model": f"hf:{model}", "train_data": data, "val_data": data,
                                  "output_dir": str(out), "input_dropout": 0.0,
                                  "stages": stages, **extra})


@pytest.mark.parametrize("kind", ["clip", "chinese_clip"])
def test_blocks_reproduce_the_model(tmp_path, kind):
    """Features by blocks, split anywhere, then the projections: the model's own vectors."""
    folder = tiny(kind, tmp_path / kind)
    parts = HFTrainable(str(folder))
    assert len(parts.image_backbone.blocks()) == 2 + 2  # embeddings, 2 layers, post-norm
    assert len(parts.text_backbone.blocks()) == (4 if kind == "clip" else 3)
    texts = [text for _, text in captions(kind == "chinese_clip")]
    images = [path for path, _ in captions(False)][:4]
    from PIL import Image

    images = [Image.open(path).convert("RGB") for path in images]
    reference = load_encoder.__wrapped__(f"hf:{folder}")
    with torch.inference_mode():
        image = torch.nn.functional.normalize(parts.heads.image(parts.image_features(images)))
        text = torch.nn.functional.normalize(parts.heads.text(parts.text_features(texts)))
        np.testing.assert_allclose(image.numpy(), reference.encode_images(images), atol=1e-5)
        np.testing.assert_allclose(text.numpy(), reference.encode_texts(texts), atol=1e-5)
        tokens = parts.text_backbone.tokenize(texts)
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        middle = parts.text_backbone.run_blocks(ids, mask, 0, 2)
        torch.testing.assert_close(parts.text_backbone.run_blocks(middle, mask, 2),
                                   parts.text_features(texts), rtol=0, atol=1e-5)
        from crossmodal.models.preprocess import images_to_tensor

        pixels = images_to_tensor(images, parts.preprocessing)
        for cut in (1, 3):  # below the post-layernorm only [CLS] is kept
            middle = parts.image_backbone.run_blocks(pixels, 0, cut)
            assert middle.shape[1] == (1 if cut == 3 else 17)
            torch.testing.assert_close(parts.image_backbone.run_blocks(middle, cut),
                                       parts.image_features(images), rtol=0, atol=1e-5)


def test_top_blocks_train_and_the_saved_model_scores_what_validation_said(tmp_path):
    folder = tiny("clip", tmp_path / "clip")
    data = pairs(tmp_path)
    best = run_training(config(folder, data, tmp_path / "run", [HEADS, TOP],
                               fresh_heads=True), progress=False)
    assert best["model"] == f"hf:{tmp_path / 'run' / 'best'}"
    assert best["stage"] == "top", "training the top blocks should beat heads alone here"
    trained = load_file(str(tmp_path / "run" / "best-backbones.safetensors"))
    assert any(k.startswith("image.vision_model.encoder.layers.1.") for k in trained)
    assert any(k.startswith("text.text_model.final_layer_norm.") for k in trained)
    assert not any(".layers.0." in k for k in trained)  # below the cut: frozen
    encoder = load_encoder.__wrapped__(best["model"])
    report = evaluate_model(encoder, load_dataset(data), progress=False)
    assert abs(report["rsum"] - best["val"]["rsum"]) < 1e-6
    saved = tf.CLIPModel.from_pretrained(tmp_path / "run" / "best").state_dict()
    source = tf.CLIPModel.from_pretrained(folder).state_dict()
    for key in ("vision_model.encoder.layers.0.mlp.fc1.weight", "text_model.embeddings."
                "token_embedding.weight", "logit_scale"):
        torch.testing.assert_close(saved[key], source[key], rtol=0, atol=0, msg=key)
    for key in ("vision_model.encoder.layers.1.mlp.fc1.weight", "visual_projection.weight",
                "text_model.final_layer_norm.weight"):
        assert not torch.equal(saved[key], source[key]), key


def test_chinese_clip_text_tower_trains_whole(tmp_path):
    """freeze = "image": every text block trains from token ids; the result loads and agrees."""
    folder = tiny("chinese_clip", tmp_path / "cn")
    data = pairs(tmp_path, chinese=True)
    stage = {**HEADS, "name": "text", "freeze": "image", "backbone_lr": 1e-3}
    best = run_training(config(folder, data, tmp_path / "run", [stage]), progress=False)
    trained = load_file(str(tmp_path / "run" / "best-backbones.safetensors"))
    assert any(k.startswith("text.text_model.embeddings.") for k in trained)
    assert not any(k.startswith("image.") for k in trained)
    report = evaluate_model(load_encoder.__wrapped__(best["model"]), load_dataset(data),
                            progress=False)
    assert abs(report["rsum"] - best["val"]["rsum"]) < 1e-6


def test_resume_after_interruption_saves_the_same_model(tmp_path, monkeypatch):
    folder = tiny("clip", tmp_path / "clip")
    data = pairs(tmp_path)
    stages = [{**HEADS, "max_epochs": 1}, TOP]
    whole = run_training(config(folder, data, tmp_path / "a", stages), progress=False)
    real, calls = StageTrainer._run_epoch, {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:  # the top-blocks stage, second epoch: killed mid-run
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(StageTrainer, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(config(folder, data, tmp_path / "b", stages), progress=False)
    monkeypatch.setattr(StageTrainer, "_run_epoch", real)
    resumed = run_training(config(folder, data, tmp_path / "b", stages), progress=False)
    assert resumed["val"] == whole["val"]
    a = load_file(str(tmp_path / "a" / "best" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "best" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_unsupported_models_and_bad_block_counts_are_clear_errors(tmp_path):
    data = pairs(tmp_path)
    siglip = build("siglip", tmp_path / "siglip")
    with pytest.raises(BadInputError, match=r"is a siglip model; crossmodal train supports "
                                            r"hf: clip, chinese_clip"):
        run_training(config(siglip, data, tmp_path / "s", [HEADS]), progress=False)
    with pytest.raises(BadInputError, match="open_clip models are not supported for training"):
        run_training(TrainConfig.from_dict({"model": "open_clip:ViT-B/32", "train_data": data,
                                            "val_data": data}), progress=False)
    with pytest.raises(BadInputError, match="train_image_blocks must be a count"):
        config(siglip, data, tmp_path / "s", [{**TOP, "train_image_blocks": -1}])
    folder = tiny("clip", tmp_path / "clip")
    counts = HFTrainable(str(folder))
    stage = config(folder, data, tmp_path / "c", [{**TOP, "train_image_blocks": 99,
                                                   "train_text_blocks": "all"}]).stages[0]
    assert stage.blocks_to_train("image", len(counts.image_backbone.blocks())) == 4
    assert stage.blocks_to_train("text", len(counts.text_backbone.blocks())) == 4


def test_train_command_names_the_hf_model(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from crossmodal.cli.main import cli

    monkeypatch.chdir(tmp_path)
    folder = tiny("clip", tmp_path / "clip")
    raw = {"model": f"hf:{folder}", "train_data": pairs(tmp_path), "val_data": pairs(tmp_path),
           "output_dir": str(tmp_path / "run"), "stages": [{**HEADS, "max_epochs": 1}]}
    (tmp_path / "run.json").write_text(json.dumps(raw), encoding="utf-8")
    for again in ([], ["--no-resume"]):  # the second run replaces OUT/best whole
        result = CliRunner().invoke(cli, ["train", "--config", "run.json", *again])
        assert result.exit_code == 0, result.output + str(result.exception)
        assert f"use it as --model hf:{tmp_path / 'run' / 'best'}" in result.output
    assert not list((tmp_path / "run").glob(".best*"))  # no temp or old folder left
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
