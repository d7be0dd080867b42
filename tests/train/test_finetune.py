"""`crossmodal finetune`: bad input refused in one line before any work, the journey on a tiny
random hf: CLIP (held-out before/after, a model folder every command takes, a model card),
resume after an interruption to the same weights, and nothing written into the package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossmodal.cli.main import cli
from crossmodal.models.registry import load_encoder, split_model_id
from crossmodal.train import finetune
from tests import hf_helpers

COLOURS = ["red", "green", "blue", "deep"]
THINGS = ["square", "field", "sea", "cat", "dog"]


def write_photos(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[tuple[Path, str]]:
    """n distinct noisy photos, each with a caption from the tiny models' vocabulary."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        tint = rng.integers(0, 255, 3)
        pixels = np.clip(rng.normal(tint, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"p{i:03d}.png"
        Image.fromarray(pixels).save(path)
        pairs.append((path, f"a {COLOURS[i % 4]} {THINGS[(i // 4) % 5]} photo of a "
                            f"{THINGS[i % 5]}"))
    return pairs


def write_table(path: Path, rows: list[tuple[object, str]]) -> Path:
    lines = ["image,caption"] + [f"{image},{caption}" for image, caption in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return hf_helpers.build("clip", tmp_path_factory.mktemp("clip") / "model")


@pytest.fixture
def no_long_work(monkeypatch):
    """Fails the test if a check let the run reach the model or its features."""
    def boom(*args, **kwargs):
        raise AssertionError("long work started before the input was refused")

    monkeypatch.setattr(finetune, "build_encoder", boom)


def run(args: list[str]):
    return CliRunner().invoke(cli, ["finetune", "--quiet", *args])


def refused(result, words: str) -> None:
    assert result.exit_code == 2, result.output + repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.output


# --- bad input -------------------------------------------------------------------------
def test_a_table_of_mostly_missing_images_is_refused(tmp_path, tiny_clip, no_long_work):
    pairs = write_photos(tmp_path / "photos", 20)
    rows = pairs + [(tmp_path / f"gone{i}.jpg", f"a red cat {i}") for i in range(60)]
    table = write_table(tmp_path / "t.csv", rows)
    refused(run(["--from", f"hf:{tiny_clip}", "--data", str(table), "--out",
                 str(tmp_path / "out")]), "most images are missing (60 caption rows")


def test_few_missing_images_and_empty_captions_are_skipped_and_reported(tmp_path, tiny_clip):
    pairs = write_photos(tmp_path / "photos", 70)
    rows = pairs + [(tmp_path / "gone.jpg", "a red cat"), (pairs[0][0], "")]
    table = write_table(tmp_path / "t.csv", rows)
    result = run(["--from", f"hf:{tiny_clip}", "--data", str(table), "--out",
                  str(tmp_path / "out"), "--epochs", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "skipped 1 caption rows name missing image files" in result.output
    assert "skipped 1 empty captions" in result.output
    card = json.loads((tmp_path / "out" / "model-card.json").read_text())
    assert card["counts"]["skipped"] == 2


def test_one_caption_for_all_photos_is_refused(tmp_path, tiny_clip, no_long_work):
    rows = [(path, "a photo") for path, _ in write_photos(tmp_path / "photos", 60)]
    table = write_table(tmp_path / "t.csv", rows)
    refused(run(["--from", f"hf:{tiny_clip}", "--data", str(table), "--out",
                 str(tmp_path / "out")]), "60 of 60 captions are the same ('a photo')")


def test_fewer_than_fifty_pairs_are_refused(tmp_path, tiny_clip, no_long_work):
    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 30))
    refused(run(["--from", f"hf:{tiny_clip}", "--data", str(table), "--out",
                 str(tmp_path / "out")]), "30 image-caption pairs; fine-tuning needs at least 50")


@pytest.mark.parametrize("model, words", [
    ("onnx:/nowhere/export", "an ONNX export holds no trainable weights"),
    ("open_clip:ViT-B-32/openai", "open_clip models cannot train here"),
    ("fusion:towers:lite-en+onnx:/nowhere/export", "member onnx:/nowhere/export is not a "
                                                   "towers: model"),
])
def test_a_base_that_cannot_train_is_refused(tmp_path, no_long_work, model, words):
    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 60))
    refused(run(["--from", model, "--data", str(table), "--out", str(tmp_path / "out")]), words)


def test_an_hf_model_of_another_family_is_refused(tmp_path, no_long_work):
    siglip = hf_helpers.build("siglip", tmp_path / "siglip")
    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 60))
    refused(run(["--from", f"hf:{siglip}", "--data", str(table), "--out",
                 str(tmp_path / "out")]), "a siglip model cannot be fine-tuned here")


def test_an_existing_out_is_refused_unless_overwrite(tmp_path, tiny_clip, no_long_work):
    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 60))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["--from", f"hf:{tiny_clip}", "--data", str(table), "--out", str(out)]
    refused(run(args), "exists and is not empty: choose a new folder")
    refused(run([*args, "--overwrite"]), "holds files finetune did not write")
    assert (out / "notes.txt").read_text() == "mine"
    (out / "crossmodal-model.json").write_text("{}")
    refused(run(args), "already holds a model")
    refused(run([*args, "--resume"]), "already holds a model")
    few = write_table(tmp_path / "few.csv", write_photos(tmp_path / "few", 10))
    refused(run(["--from", f"hf:{tiny_clip}", "--data", str(few), "--out", str(out),
                 "--overwrite"]), "10 image-caption pairs")
    assert (out / "notes.txt").is_file()  # a refused --overwrite deletes nothing


def test_out_inside_the_package_is_refused(tmp_path, tiny_clip, no_long_work):
    import crossmodal

    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 60))
    inside = Path(crossmodal.__file__).parent / "my-model"
    refused(run(["--from", f"hf:{tiny_clip}", "--data", str(table), "--out", str(inside)]),
            "inside the installed package")
    assert not inside.exists()


# --- the journey -----------------------------------------------------------------------
def test_finetune_hf_writes_a_model_folder_every_command_takes(tmp_path, tiny_clip,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs = write_photos(tmp_path / "photos", 80)
    table = write_table(tmp_path / "photos.csv", pairs)
    result = run(["--from", f"hf:{tiny_clip}", "--data", "photos.csv", "--out", "mine",
                  "--epochs", "3", "--lr", "1e-2", "--seed", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = tmp_path / "mine"
    for words in ("16 of 80 images held out at random by image (--val-fraction 0.1, seed 3)",
                  "i2t R@1", "Rsum", "Mean Recall", "before", "after", f"model: {out}"):
        assert words in result.output, words
    card = json.loads((out / "model-card.json").read_text())
    assert card["held_out"]["seed"] == 3 and card["counts"]["val_images"] == 16
    assert card["counts"]["train_images"] == 64 and card["base_model"] == f"hf:{tiny_clip}"
    assert card["after"]["rsum"] >= card["before"]["rsum"]  # epoch 0 (the base) competes
    assert {"features", "training"} <= set(card["phases_s"]) and card["cpu"]
    assert "Held-out retrieval, before and after" in (out / "MODEL_CARD.md").read_text()
    # The folder is a model id: relative or absolute, it names the same vectors.
    load_encoder.cache_clear()
    assert split_model_id("mine")[0] == "hf"
    encoder = load_encoder("mine")
    assert encoder.model_id == str(out)
    assert encoder.encode_texts(["a red cat"]).shape == (1, 16)
    evaluated = CliRunner().invoke(cli, ["eval", "--model", "mine", "--data",
                                         f"table:{table}", "--quiet"])
    assert evaluated.exit_code == 0, evaluated.output
    indexed = CliRunner().invoke(cli, ["index", str(tmp_path / "photos"), "--into", "idx",
                                       "--model", "mine", "--quiet"])
    assert indexed.exit_code == 0, indexed.output
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["model"] == str(out)
    searched = CliRunner().invoke(cli, ["search", "idx", "a red cat"])
    assert searched.exit_code == 0 and "p0" in searched.output, searched.output
    exported = CliRunner().invoke(cli, ["export-onnx", "--model", "mine", "--out", "mine-onnx"])
    assert exported.exit_code == 0, exported.output
    assert json.loads((tmp_path / "mine-onnx" / "onnx.json").read_text())["source_model"] == \
        str(out)
    load_encoder.cache_clear()


def test_a_folder_with_sidecar_captions_is_data(tmp_path, tiny_clip):
    for path, caption in write_photos(tmp_path / "photos", 60):
        path.with_suffix(".txt").write_text(f"{caption}\nthe {caption}\n", encoding="utf-8")
    (tmp_path / "photos" / "nocaption.png").write_bytes(
        (tmp_path / "photos" / "p000.png").read_bytes())
    result = run(["--from", f"hf:{tiny_clip}", "--data", str(tmp_path / "photos"), "--out",
                  str(tmp_path / "out"), "--epochs", "1", "--val-fraction", "0.25"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    card = json.loads((tmp_path / "out" / "model-card.json").read_text())
    assert card["counts"]["train_images"] + card["counts"]["val_images"] == 60
    assert card["counts"]["val_texts"] == 2 * card["counts"]["val_images"] == 30


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_clip, monkeypatch):
    from safetensors.numpy import load_file

    from crossmodal.train.trainer import StageTrainer

    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 80))
    args = ["--from", f"hf:{tiny_clip}", "--data", str(table), "--epochs", "4", "--lr",
            "1e-2", "--batch-size", "16"]
    whole = run([*args, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output

    real_save = StageTrainer._save

    def save_then_die(self, s, epoch, optimizer, schedule):
        real_save(self, s, epoch, optimizer, schedule)
        if epoch == 1:  # after the second epoch's checkpoint, as Ctrl-C would
            raise KeyboardInterrupt

    monkeypatch.setattr(StageTrainer, "_save", save_then_die)
    broken = run([*args, "--out", str(tmp_path / "cut")])
    assert broken.exit_code != 0 and not (tmp_path / "cut" / "crossmodal-model.json").exists()
    monkeypatch.setattr(StageTrainer, "_save", real_save)
    changed = run([*args, "--seed", "1", "--out", str(tmp_path / "cut")])
    refused(changed, "holds an interrupted run with other settings (seed)")
    resumed = run([*args, "--out", str(tmp_path / "cut")])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the interrupted run" in resumed.output
    log = [json.loads(line) for line in
           (tmp_path / "cut" / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]  # epochs 1-2 not run again
    a = load_file(str(tmp_path / "whole" / "hf" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "hf" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "whole" / "model-card.json").read_text())["after"] == \
        json.loads((tmp_path / "cut" / "model-card.json").read_text())["after"]


def test_hold_out_is_by_image_and_seeded():
    from crossmodal.data.dataset import RetrievalDataset
    from crossmodal.train.finetune_checks import hold_out

    data = RetrievalDataset("d")
    for i in range(200):
        row = data.add_image(f"i{i}", Path(f"/x/{i}.jpg"))
        data.add_text(f"caption {i} a", row)
        data.add_text(f"caption {i} b", row)
    train, val = hold_out(data, 0.1, seed=5)
    assert len(val) == 40 and len(train) == 160  # a fifth of a small set, up to 100
    assert not set(train.image_ids) & set(val.image_ids)
    assert len(val.texts) == 80  # every caption of a held-out photo goes with it
    assert hold_out(data, 0.1, seed=5)[1].image_ids == val.image_ids
    assert hold_out(data, 0.1, seed=6)[1].image_ids != val.image_ids


def test_finetune_help_names_the_default_base():
    from crossmodal.cli.finetune_commands import DEFAULT_FROM
    from crossmodal.models.defaults import DEFAULT_MODEL
    from crossmodal.train.finetune_checks import trainable_base

    result = CliRunner().invoke(cli, ["finetune", "--help"])
    assert result.exit_code == 0 and DEFAULT_FROM in result.output
    assert DEFAULT_FROM == DEFAULT_MODEL
    assert trainable_base(DEFAULT_FROM)[0] == "fusion"  # a model finetune can train


def test_train_heads_never_writes_into_the_package(tmp_path, monkeypatch):
    """Without --out the heads go to the run folder, not over the shipped weights."""
    import hashlib

    import crossmodal
    from crossmodal.train import run as train_run

    package = Path(crossmodal.__file__).resolve().parent

    def snapshot() -> dict:
        return {p: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}

    def fake_training(config, resume=True, progress=True):
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "best.safetensors").write_bytes(b"trained heads")
        return {"val": {"rsum": 1.0}, "model": f"towers:{out / 'tower.json'}"}

    monkeypatch.setattr(train_run, "run_training", fake_training)
    monkeypatch.chdir(tmp_path)
    before = snapshot()
    result = CliRunner().invoke(cli, ["train-heads", "--tower", "lite-en", "--data",
                                      str(tmp_path / "flickr")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert snapshot() == before
    written = tmp_path / "runs" / "train-heads-lite-en-en" / "heads.safetensors"
    assert written.read_bytes() == b"trained heads"
    inside = package / "models" / "towers" / "weights" / "lite-en.safetensors"
    refused = CliRunner().invoke(cli, ["train-heads", "--data", str(tmp_path), "--out",
                                       str(inside)])
    assert refused.exit_code == 2 and "inside the installed package" in refused.output
    assert snapshot() == before


def test_a_model_folder_names_its_model_by_its_absolute_path(tmp_path, monkeypatch,
                                                             fake_encoder):
    from crossmodal.errors import UnknownModelError
    from crossmodal.models.model_folder import read_model_folder

    folder = tmp_path / "models" / "mine"
    folder.mkdir(parents=True)
    (folder / "tower.json").write_text("{}")
    (folder / "crossmodal-model.json").write_text('{"model": "towers:tower.json"}')
    monkeypatch.chdir(tmp_path / "models")
    assert read_model_folder("mine") == (f"towers:{folder / 'tower.json'}", str(folder))
    assert split_model_id("mine") == ("towers", str(folder / "tower.json"))
    (folder / "crossmodal-model.json").write_text('{"model": "fake:colours"}')
    load_encoder.cache_clear()
    assert load_encoder("mine") is fake_encoder  # through the backend the file names
    (folder / "crossmodal-model.json").write_text('{"name": "x"}')
    with pytest.raises(UnknownModelError, match="unreadable model file"):
        split_model_id("mine")
    with pytest.raises(UnknownModelError, match="unknown model 'elsewhere'"):
        split_model_id("elsewhere")  # a folder without the model file is no model


def test_chinese_captions_fine_tune_a_chinese_clip(tmp_path):
    model = hf_helpers.build("chinese_clip", tmp_path / "cn-clip")
    pieces = ["红", "色", "的", "猫"]
    rows = [(path, f"{pieces[i % 4]}{pieces[(i // 4) % 4]}的{pieces[(i // 16) % 4]} {i}")
            for i, (path, _) in enumerate(write_photos(tmp_path / "photos", 64))]
    table = write_table(tmp_path / "t.csv", rows)
    result = run(["--from", f"hf:{model}", "--data", str(table), "--out", str(tmp_path / "out"),
                  "--epochs", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    load_encoder.cache_clear()
    encoder = load_encoder(str(tmp_path / "out"))
    assert encoder.model_type == "chinese_clip"
    assert encoder.encode_texts(["红色的猫"]).shape == (1, 16)
    load_encoder.cache_clear()


def test_kill_9_mid_run_then_the_same_command_resumes(tmp_path, tiny_clip):
    """A real process killed without warning between epochs: the same command finishes
    with the weights of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.numpy import load_file

    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 64))
    args = ["finetune", "--quiet", "--from", f"hf:{tiny_clip}", "--data", str(table),
            "--epochs", "150", "--batch-size", "16"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "crossmodal", *args, "--out", str(tmp_path / "cut")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    log = tmp_path / "cut" / "train" / "log.jsonl"
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    if process.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    assert process.returncode == -signal.SIGKILL
    done = len(log.read_text().splitlines())
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the interrupted run" in resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs[-1] == 150 and len(epochs) <= 150 + 1 and done < 150
    whole = run([*args[2:], "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    a = load_file(str(tmp_path / "whole" / "hf" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "hf" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
