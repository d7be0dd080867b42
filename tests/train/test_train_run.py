"""`crossmodal train` end to end with the real lite-en towers on the bundled samples."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.models.registry import load_encoder

SAMPLES = Path(str(resources.files("crossmodal") / "samples"))


def test_train_skips_bad_images_and_yields_a_usable_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["image,caption"]
    for path in sorted(SAMPLES.glob("*.jpg")):
        english = path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()[0]
        rows.append(f"{path},{english}")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows.append(f"{tmp_path / 'broken.jpg'},a broken photo")
    rows.append(f"{sorted(SAMPLES.glob('*.jpg'))[0]},")  # an empty caption
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = {"format": "table", "path": str(tmp_path / "pairs.csv")}
    config = {
        "model": "towers:lite-en", "train_data": data, "val_data": data,
        "output_dir": str(tmp_path / "run"), "fresh_heads": True,
        "stages": [{"name": "heads", "losses": {"infonce": 1.0, "instance": 0.5},
                    "max_epochs": 3, "batch_size": 4, "warmup": 1}],
    }
    (tmp_path / "run.json").write_text(json.dumps(config), encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--config", "run.json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "best val Rsum" in result.output
    assert "skipped bad items (unreadable images, empty captions): {'train': 2" in result.output
    tower = tmp_path / "run" / "tower.json"
    encoder = load_encoder.__wrapped__(f"towers:{tower}")
    assert encoder.encode_texts(["a dog"]).shape == (1, 256)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["val"]["images"] == 12  # the unreadable photo was left out, not fatal


def _sample_pairs(tmp_path: Path) -> dict:
    rows = ["image,caption"]
    for path in sorted(SAMPLES.glob("*.jpg")):
        for caption in path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()[:1]:
            rows.append(f"{path},{caption}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"format": "table", "path": str(tmp_path / "pairs.csv")}


def test_top_block_training_ships_a_tower_that_matches_its_validation(tmp_path, monkeypatch):
    """Heads first, then the top image blocks and text layer: the saved tower, loaded through
    the registry and evaluated by `eval`'s code, scores what training's validation said."""
    import torch

    from crossmodal.data.registry import load_dataset
    from crossmodal.evaluation.run import evaluate_model
    from crossmodal.models import speed
    from crossmodal.train.config import TrainConfig
    from crossmodal.train.run import run_training

    monkeypatch.setenv("CROSSMODAL_BF16", "0")  # one arithmetic in training and inference
    speed.cpu_has_bf16.cache_clear()
    data = _sample_pairs(tmp_path)
    config = TrainConfig.from_dict({
        "model": "towers:lite-en", "train_data": data, "val_data": data,
        "output_dir": str(tmp_path / "run"), "fresh_heads": True, "input_dropout": 0.0,
        "stages": [
            # a short, slow heads stage, so the stage that trains blocks ends ahead of it
            {"name": "heads", "losses": {"infonce": 1.0}, "max_epochs": 1, "batch_size": 4,
             "warmup": 1, "lr": 1e-4},
            {"name": "top", "train_image_blocks": 2, "train_text_blocks": 1, "backbone_lr": 1e-3,
             "losses": {"infonce": 1.0, "instance": 1.0}, "max_epochs": 2, "batch_size": 4,
             "warmup": 1, "lr": 1e-2},
        ]})
    best = run_training(config, progress=False)
    tower = json.loads(Path(best["tower_config"]).read_text())
    assert best["stage"] == "top", "training the top blocks should beat heads alone here"
    assert tower["backbone_weights"].endswith("best-backbones.safetensors")
    from safetensors.torch import load_file

    saved = load_file(tower["backbone_weights"])
    assert any(k.startswith("image.net._conv_head") for k in saved)
    assert any(k.startswith("text.model.encoder.layer.5.") for k in saved)
    assert not any(k.startswith("text.model.encoder.layer.4.") for k in saved)
    encoder = load_encoder.__wrapped__(f"towers:{best['tower_config']}")
    report = evaluate_model(encoder, load_dataset(data), progress=False)
    assert abs(report["rsum"] - best["val"]["rsum"]) < 1e-6

    # Fine-tuning that model further (text layer only) keeps its fine-tuned image blocks.
    again = TrainConfig.from_dict({
        "model": f"towers:{best['tower_config']}", "train_data": data, "val_data": data,
        "output_dir": str(tmp_path / "again"), "input_dropout": 0.0,
        "stages": [{"name": "text", "train_text_blocks": 1, "losses": {"infonce": 1.0},
                    "max_epochs": 1, "batch_size": 4, "warmup": 1, "lr": 1e-4,
                    "backbone_lr": 1e-3}]})
    second = run_training(again, progress=False)
    kept = load_file(json.loads(Path(second["tower_config"]).read_text())["backbone_weights"])
    assert set(kept) == set(saved)
    for name in saved:
        if name.startswith("image."):
            assert torch.equal(kept[name], saved[name]), name
    speed.cpu_has_bf16.cache_clear()


def test_resume_with_fine_tuned_blocks_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    import pytest
    import torch

    from crossmodal.train.config import TrainConfig
    from crossmodal.train.run import run_training
    from crossmodal.train.trainer import StageTrainer

    data = _sample_pairs(tmp_path)

    def config(out: str) -> TrainConfig:
        return TrainConfig.from_dict({
            "model": "towers:lite-en", "train_data": data, "val_data": data,
            "output_dir": str(tmp_path / out), "fresh_heads": True,
            "stages": [
                {"name": "heads", "losses": {"infonce": 1.0}, "max_epochs": 1,
                 "batch_size": 4, "warmup": 1},
                {"name": "top", "train_image_blocks": 1, "train_text_blocks": 1,
                 "losses": {"infonce": 1.0}, "max_epochs": 2, "batch_size": 4, "warmup": 1,
                 "lr": 1e-3, "backbone_lr": 1e-3},
            ]})

    run_training(config("whole"), progress=False)
    real, calls = StageTrainer._run_epoch, {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:  # stage "top", second epoch
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(StageTrainer, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(config("resumed"), progress=False)
    monkeypatch.setattr(StageTrainer, "_run_epoch", real)
    run_training(config("resumed"), progress=False)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert whole["backbones"] and set(whole["backbones"]) == set(resumed["backbones"])
    for part in ("backbones", "heads"):
        for name, value in whole[part].items():
            torch.testing.assert_close(resumed[part][name], value, rtol=0, atol=0, msg=name)
