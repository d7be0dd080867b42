"""`crossmodal finetune` of a fusion (the default model is one), on tiny towers with fake
backbones: each member learns the captions in its own language(s), a member without any
stays as it was, the written folder is a fusion of the fine-tuned members that scores what
the card says, and an interrupted run resumes to the same members. One real run of the
default model on generated photos closes the file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from crossmodal.cli.main import cli
from crossmodal.models.registry import load_encoder
from crossmodal.models.towers import TowersEncoder, find_tower_config
from crossmodal.models.towers.backbones import IMAGE_BACKBONES, TEXT_BACKBONES
from tests.train.test_finetune import refused, write_photos, write_table

COLOURS = [("red", "红色"), ("green", "绿色"), ("blue", "蓝色"), ("black", "黑色")]
THINGS = [("dog", "狗"), ("cat", "猫"), ("boat", "船"), ("horse", "马"), ("child", "孩子")]


class TinyImage(nn.Module):
    out_dim = 12

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, self.out_dim, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=generator))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.conv(pixels).mean((2, 3))

    def blocks(self) -> list[nn.Module]:
        return [self.conv]


class TinyText(nn.Module):
    """Sums a fixed random vector per character bigram (the same in every process)."""

    out_dim, max_length, trainable = 16, 64, False

    def forward(self, texts) -> torch.Tensor:
        rows = np.zeros((len(texts), self.out_dim), np.float32)
        for row, text in enumerate(texts):
            for a, b in zip(text, text[1:], strict=False):
                seed = int.from_bytes(hashlib.sha1((a + b).encode()).digest()[:4], "little")
                rows[row] += np.random.default_rng(seed).normal(size=self.out_dim)
        return torch.from_numpy(rows)

    def text_lengths(self, texts) -> list[int]:
        return [len(text) for text in texts]

    def blocks(self) -> list[nn.Module]:
        return []


@pytest.fixture
def tiny_fusion(tmp_path, monkeypatch) -> str:
    """fusion:A+B of an English-only tiny tower and one that reads any language."""
    monkeypatch.setitem(IMAGE_BACKBONES._entries, "tiny-image", lambda spec: TinyImage())
    monkeypatch.setitem(TEXT_BACKBONES._entries, "tiny-text", lambda spec: TinyText())
    monkeypatch.setenv("CROSSMODAL_TRAIN_FEATURES", "torch")
    monkeypatch.setenv("CROSSMODAL_RUNTIME", "torch")
    ids = []
    for name, languages, unit in (("tiny-en", ["en"], "words"), ("tiny-any", [], "chars")):
        config = {"name": name, "languages": languages,
                  "image": {"backbone": "tiny-image", "size": 32, "tta": "flip"},
                  "text": {"backbone": "tiny-text"},
                  "head": {"type": "linear", "dim": 8,
                           "grams": {"unit": unit, "min_count": 2, "dropout": 0.1}},
                  "weights": f"{name}.safetensors"}
        path = tmp_path / "towers" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(config))
        torch.manual_seed(len(ids))
        encoder = TowersEncoder(find_tower_config(str(path)), load_heads=False)
        encoder.heads.grams.fit([caption for _, caption in captions(40, "en")]
                                + [caption for _, caption in captions(40, "zh")])
        encoder.heads.save(path.with_suffix(".safetensors"))
        ids.append(f"towers:{path}")
    load_encoder.cache_clear()
    yield f"fusion:{ids[0]}+0.5*{ids[1]}"
    load_encoder.cache_clear()


def captions(n: int, language: str) -> list[tuple[int, str]]:
    out = []
    for i in range(n):
        (colour, colour_zh), (thing, thing_zh) = COLOURS[i % 4], THINGS[(i // 4) % 5]
        other, other_zh = THINGS[i % 5]
        english = f"a {colour} {thing} is playing with the {other} in park {i}"
        chinese = f"{i}号公园里一只{colour_zh}的{thing_zh}和{other_zh}在玩"
        out.append((i, english if language == "en" else chinese))
    return out


def photo_table(folder: Path, n: int, languages: tuple[str, ...] = ("en", "zh")) -> Path:
    photos = write_photos(folder / "photos", n)
    rows = [(photos[i][0], caption) for language in languages
            for i, caption in captions(n, language)]
    return write_table(folder / "photos.csv", rows)


def finetune(args: list[str]):
    return CliRunner().invoke(cli, ["finetune", "--quiet", *args])


def test_each_member_learns_its_languages_and_the_folder_is_the_fused_model(tmp_path,
                                                                             tiny_fusion):
    table = photo_table(tmp_path, 80)
    out = tmp_path / "mine"
    result = finetune(["--from", tiny_fusion, "--data", str(table), "--out", str(out),
                       "--epochs", "3", "--lr", "1e-2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    # 64 training photos: the English member learns their English captions, the one that
    # reads any language the Chinese ones (English is the English member's).
    assert "tiny-en.json: heads on 64 en captions" in result.output
    assert "tiny-any.json: heads on 64 zh captions" in result.output
    for words in ("English captions (en)", "Chinese captions (zh)", "Mean Recall", "members:"):
        assert words in result.output, words
    card = json.loads((out / "model-card.json").read_text())
    assert [m["learns"] for m in card["members"]] == [["en"], ["zh"]]
    assert set(card["by_language"]) == {"en", "zh"}
    assert {"image_features", "text_features", "training", "evaluation"} <= \
        set(card["phases_s"])
    # Both members read photos with the same backbone: one feature pass per split, shared.
    features = Path(os.environ["CROSSMODAL_CACHE"]) / "features"
    assert len(list(features.glob("img-*.npy"))) == 2
    model = json.loads((out / "crossmodal-model.json").read_text())["model"]
    assert model == ("fusion:1.0*towers:members/1-tiny-en/tower.json+"
                     "0.5*towers:members/2-tiny-any/tower.json")
    tower = json.loads((out / "members" / "1-tiny-en" / "tower.json").read_text())
    assert tower["languages"] == ["en"] and tower["image"]["tta"] == "flip"
    # The folder loads as the fusion of the fine-tuned members and scores, on the held-out
    # photos, what the card says it scored.
    from crossmodal.evaluation.evaluators import ImageTextEvaluator
    from crossmodal.train.finetune_checks import hold_out, load_finetune_data

    encoder = load_encoder(str(out))
    assert encoder.model_id == str(out) and encoder.dim == 16
    val = hold_out(load_finetune_data(str(table)), 0.1, 0)[1]
    from PIL import Image

    images = encoder.encode_images([Image.open(path).convert("RGB") for path in val.images])
    report = ImageTextEvaluator.on_embeddings(images, encoder.encode_texts(val.texts),
                                              val.text_image).report
    assert report["rsum"] == pytest.approx(card["after"]["rsum"], abs=1e-6)
    base = load_encoder(tiny_fusion)
    before = ImageTextEvaluator.on_embeddings(
        base.encode_images([Image.open(path).convert("RGB") for path in val.images]),
        base.encode_texts(val.texts), val.text_image).report
    assert before["rsum"] == pytest.approx(card["before"]["rsum"], abs=1e-6)


def test_a_member_without_captions_in_its_language_stays_as_it_was(tmp_path, tiny_fusion):
    table = photo_table(tmp_path, 80, languages=("en",))
    out = tmp_path / "mine"
    result = finetune(["--from", tiny_fusion, "--data", str(table), "--out", str(out),
                       "--epochs", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    kept = [line for line in result.output.splitlines() if "kept as it was" in line]
    assert len(kept) == 2 and "tiny-any.json: kept as it was: 0 no captions" in kept[0]
    base_heads = Path(tiny_fusion.split("+0.5*towers:")[1]).with_suffix(".safetensors")
    written = out / "members" / "2-tiny-any" / "heads.safetensors"
    assert written.read_bytes() == base_heads.read_bytes()
    assert not (out / "train" / "2-tiny-any").exists()


def test_an_interrupted_fusion_run_resumes_to_the_same_members(tmp_path, tiny_fusion,
                                                             monkeypatch):
    from crossmodal.train.trainer import StageTrainer

    table = photo_table(tmp_path, 80)
    args = ["--from", tiny_fusion, "--data", str(table), "--epochs", "3", "--lr", "1e-2",
            "--batch-size", "16"]
    assert finetune([*args, "--out", str(tmp_path / "whole")]).exit_code == 0
    real_save = StageTrainer._save

    def die_in_the_second_member(self, s, epoch, optimizer, schedule):
        real_save(self, s, epoch, optimizer, schedule)
        if self.out.name == "2-tiny-any" and epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(StageTrainer, "_save", die_in_the_second_member)
    cut = tmp_path / "cut"
    assert finetune([*args, "--out", str(cut)]).exit_code != 0
    assert not (cut / "crossmodal-model.json").exists()
    monkeypatch.setattr(StageTrainer, "_save", real_save)
    resumed = finetune([*args, "--out", str(cut)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the interrupted run" in resumed.output
    for member, epochs in (("1-tiny-en", [1, 2, 3]), ("2-tiny-any", [1, 2, 3])):
        log = (cut / "train" / member / "log.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in log] == epochs  # none run twice
        a = tmp_path / "whole" / "members" / member / "heads.safetensors"
        assert a.read_bytes() == (cut / "members" / member / "heads.safetensors").read_bytes()
    whole = json.loads((tmp_path / "whole" / "model-card.json").read_text())
    assert json.loads((cut / "model-card.json").read_text())["after"] == whole["after"]


@pytest.mark.parametrize("model, extra, words", [
    ("fusion:towers:lite-en+hf:/nowhere/clip", [], "member hf:/nowhere/clip is not a towers:"),
    ("fusion:bilingual", ["--fresh-heads"], "a fusion fine-tunes its members' own heads"),
])
def test_what_a_fusion_cannot_take_is_refused_in_one_line(tmp_path, monkeypatch, model,
                                                          extra, words):
    from crossmodal.train import finetune as finetune_module

    monkeypatch.setattr(finetune_module, "build_encoder", None)  # never reached
    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 60))
    refused(finetune(["--from", model, "--data", str(table), "--out", str(tmp_path / "o"),
                      *extra]), words)
    assert not (tmp_path / "o").exists()


def test_a_fusion_with_a_projection_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file({"projection": np.eye(4, dtype=np.float32)}, str(tmp_path / "p.safetensors"))
    spec = tmp_path / "projected.toml"
    spec.write_text('projection = "p.safetensors"\nmembers = [{model = "towers:lite-en"}, '
                    '{model = "towers:lite-zh"}]\n')
    table = write_table(tmp_path / "t.csv", write_photos(tmp_path / "photos", 60))
    refused(finetune(["--from", f"fusion:{spec}", "--data", str(table), "--out",
                      str(tmp_path / "o")]), "a fusion with a projection cannot be fine-tuned")


def test_the_default_model_fine_tunes_for_real(tmp_path, monkeypatch):
    """The shipped default (four towers, two image backbones, two text engines) on 90
    generated photos with English and Chinese captions: every member trains, and the
    folder embeds both languages into the default's 1024 dims."""
    from crossmodal.cli.finetune_commands import DEFAULT_FROM
    from crossmodal.models.defaults import DEFAULT_MODEL

    assert DEFAULT_FROM == DEFAULT_MODEL
    monkeypatch.chdir(tmp_path)
    table = photo_table(tmp_path, 90)
    result = finetune(["--data", str(table), "--out", "mine", "--epochs", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    card = json.loads((tmp_path / "mine" / "model-card.json").read_text())
    assert card["base_model"] == "fusion:bilingual"
    assert [m["learns"] for m in card["members"]] == [["en"], ["en"], ["zh"], ["zh"]]
    assert all("best_epoch" in m for m in card["members"])  # each one trained
    assert all(m["after_rsum"] >= m["before_rsum"] for m in card["members"])  # epoch 0 too
    encoder = load_encoder(str(tmp_path / "mine"))
    assert encoder.encode_texts(["a red dog", "红色的狗"]).shape == (2, 1024)
    load_encoder.cache_clear()


def test_a_rare_detected_language_is_taken_for_misdetection():
    from types import SimpleNamespace

    from crossmodal.train.finetune_fusion import assign_languages, main_languages

    langs = ["en"] * 50 + ["zh"] * 45 + ["de"] * 3 + [None] * 2
    assert main_languages(langs) == ["en", "zh"]
    members = [SimpleNamespace(reads=("en",), learns=set()),
               SimpleNamespace(reads=(), learns=set())]
    assign_languages(members, langs)
    assert [m.learns for m in members] == [{"en"}, {"zh"}]
