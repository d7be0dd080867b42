"""`crossmodal finetune` with a real towers: model on generated photos, and training's image
features from ONNX Runtime against the PyTorch backbone they replace."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossmodal.cli.main import cli
from crossmodal.models.registry import load_encoder
from tests.train.test_finetune import write_photos, write_table

SAMPLES = Path(str(resources.files("crossmodal") / "samples"))


def test_onnx_training_features_match_the_pytorch_backbone():
    from crossmodal.models.towers import TowersEncoder, find_tower_config
    from crossmodal.train.fast_features import onnx_image_features

    encoder = TowersEncoder(find_tower_config("lite-en"))
    images = [Image.open(path).convert("RGB") for path in sorted(SAMPLES.glob("*.jpg"))[:3]]
    fast = onnx_image_features(encoder)
    assert fast is not None
    onnx = fast(images)
    torch_rows = encoder.image_features(images).numpy()
    assert onnx.shape == torch_rows.shape == (3, 2, encoder.image_backbone.out_dim)  # tta views
    a, b = onnx.reshape(-1, onnx.shape[-1]), torch_rows.reshape(-1, onnx.shape[-1])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9999


def test_torch_features_when_asked(monkeypatch):
    from crossmodal.models.towers import TowersEncoder, find_tower_config
    from crossmodal.train.fast_features import onnx_image_features

    monkeypatch.setenv("CROSSMODAL_TRAIN_FEATURES", "torch")
    assert onnx_image_features(TowersEncoder(find_tower_config("lite-en"))) is None


def test_finetune_lite_en_on_generated_photos(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs = write_photos(tmp_path / "photos", 60, size=64)
    write_table(tmp_path / "photos.csv", pairs)
    result = CliRunner().invoke(cli, ["finetune", "--from", "towers:lite-en", "--data",
                                      "photos.csv", "--out", "mine", "--epochs", "2",
                                      "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = tmp_path / "mine"
    model = json.loads((out / "crossmodal-model.json").read_text())
    assert model["model"] == "towers:tower.json" and model["base_model"] == "towers:lite-en"
    tower = json.loads((out / "tower.json").read_text())
    assert tower["weights"] == "heads.safetensors" and tower["languages"] == ["en"]
    card = json.loads((out / "model-card.json").read_text())
    assert card["counts"] == {"train_images": 48, "train_texts": 48, "val_images": 12,
                              "val_texts": 12, "skipped": 0}
    load_encoder.cache_clear()
    encoder = load_encoder(str(out))
    assert encoder.model_id == str(out)
    assert encoder.encode_texts(["a red cat"]).shape == (1, 256)
    load_encoder.cache_clear()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_features_run_on_the_gpu_where_there_is_one(tmp_path):
    from crossmodal.models.towers import TowersEncoder, find_tower_config
    from crossmodal.train.fast_features import cuda_image_features, onnx_image_features

    encoder = TowersEncoder(find_tower_config("lite-en"))
    assert onnx_image_features(encoder) is None  # the GPU runs PyTorch instead
    images = [Image.open(path).convert("RGB") for path in sorted(SAMPLES.glob("*.jpg"))[:4]]
    gpu = cuda_image_features(encoder)(images)
    cpu = TowersEncoder(find_tower_config("lite-en")).image_features(images).numpy()
    a, b = gpu.reshape(-1, gpu.shape[-1]), cpu.reshape(-1, gpu.shape[-1])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99  # fp16 autocast


def test_onnx_text_features_match_pytorch_fp32(monkeypatch):
    from crossmodal.models import speed
    from crossmodal.models.towers import TowersEncoder, find_tower_config
    from crossmodal.train.fast_features import onnx_text_features

    monkeypatch.setenv("CROSSMODAL_BF16", "0")  # PyTorch in fp32, as ONNX Runtime runs
    speed.cpu_has_bf16.cache_clear()
    try:
        encoder = TowersEncoder(find_tower_config("lite-en"))
        fast = onnx_text_features(encoder)
        assert fast is not None
        texts = ["a dog", "two children play on a red slide in the park", "雪地里的狗"]
        a, b = fast(texts), encoder.text_features(texts).numpy()
        assert a.shape == b.shape and ((a * b).sum(1) > 0.9999).all()  # both unit rows
    finally:
        speed.cpu_has_bf16.cache_clear()
