"""open_clip: names, random weights, QuickGELU; and (slow) one OpenAI backbone run for real in
the separate open_clip environment (benchmarks/suite/openclip_env.sh), where it exists."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from crossmodal.errors import UnknownModelError
from crossmodal.models.openclip import OpenCLIPSpec, parse_open_clip_name, random_seed
from crossmodal.models.registry import load_encoder
from tests.paths import REPO

VENV = Path(os.environ.get("OPENCLIP_VENV", "/work/venvs/openclip"))
FLICKR = REPO.parent / "shared" / "data" / "flickr8k-cn"
TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                       "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 2}}


class StubOpenClip:
    """The few open_clip look-ups OpenCLIPSpec makes, so names are tested without open_clip."""

    TAGS = {("RN50", "openai"): {"quick_gelu": True}, ("ViT-B-32", "openai"): {"quick_gelu": True},
            ("ViT-B-32", "laion2b_s34b_b79k"): {"hf_hub": "laion/x"}}

    @staticmethod
    def list_models() -> list[str]:
        return ["RN50", "ViT-B-32", "ViT-L-14-336"]

    def get_pretrained_cfg(self, arch: str, tag: str) -> dict:
        return self.TAGS.get((arch, tag), {})  # {}: not a tag of arch, as open_clip answers

    def list_pretrained_tags_by_model(self, arch: str) -> list[str]:
        return [tag for a, tag in self.TAGS if a == arch]


def test_random_names_parse():
    assert parse_open_clip_name("ViT-B/32/random") == ("ViT-B-32", "random")
    assert parse_open_clip_name("ViT-L/14@336px/random-3") == ("ViT-L-14-336", "random-3")
    assert parse_open_clip_name("RN50/random") == ("RN50", "random")
    assert parse_open_clip_name("ViT-B/32//tmp/ft.pt") == ("ViT-B-32", "/tmp/ft.pt")
    assert parse_open_clip_name("ViT-B-32/random") == ("ViT-B-32", "random")
    assert [random_seed(t) for t in ("random", "random-7", "randomx", "openai", None)] == \
        [0, 7, None, None, None]


def test_spec_quick_gelu_seed_and_refusals(tmp_path):
    stub = StubOpenClip()
    assert OpenCLIPSpec.from_name("RN50", stub) == OpenCLIPSpec("RN50", "openai", None, True)
    # OpenAI's architectures keep QuickGELU with random weights; open_clip's own names do not
    assert OpenCLIPSpec.from_name("ViT-B/32/random-5", stub) == \
        OpenCLIPSpec("ViT-B-32", None, 5, True)
    assert not OpenCLIPSpec.from_name("ViT-B-32/random", stub).quick_gelu
    assert not OpenCLIPSpec.from_name("ViT-B/32/laion2b_s34b_b79k", stub).quick_gelu
    weights = tmp_path / "ft.pt"
    weights.write_bytes(b"x")
    assert OpenCLIPSpec.from_name(f"ViT-B/32/{weights}", stub).quick_gelu  # retrained OpenAI
    with pytest.raises(UnknownModelError, match="names no weights.*/random"):
        OpenCLIPSpec.from_name("ViT-B-32", stub)  # open_clip would build random weights quietly
    with pytest.raises(UnknownModelError, match="neither an open_clip tag"):
        OpenCLIPSpec.from_name("ViT-B-32/nonsense", stub)
    with pytest.raises(UnknownModelError, match="no architecture"):
        OpenCLIPSpec.from_name("RN42/random", stub)


def test_random_weights_are_seeded_and_leave_the_callers_rng(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    (tmp_path / "crossmodal-tiny-random.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "crossmodal-tiny-random.json")
    load_encoder.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = load_encoder("open_clip:crossmodal-tiny-random/random")
    assert torch.equal(torch.rand(3), expected)  # building drew from a forked generator
    load_encoder.cache_clear()
    again = load_encoder("open_clip:crossmodal-tiny-random/random-0")
    other = load_encoder("open_clip:crossmodal-tiny-random/random-1")
    load_encoder.cache_clear()
    texts = ["a dog on the beach", "two cyclists"]
    np.testing.assert_array_equal(first.encode_texts(texts), again.encode_texts(texts))
    assert first.fingerprint == again.fingerprint and first.fingerprint.startswith("random-seed0-")
    assert other.fingerprint.startswith("random-seed1-")
    assert not np.allclose(first.encode_texts(texts), other.encode_texts(texts))
    assert first.text_lengths(["a red square", "word " * 40]) == [5, 42]  # untruncated


@pytest.mark.slow
def test_rn50_runs_for_real_in_the_open_clip_venv(tmp_path):
    """RN50 with random weights through benchmarks/suite/openclip_nine.py in the venv: vectors agree
    with open_clip's own, the CLI indexes, searches and evaluates."""
    python = VENV / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"no open_clip environment at {VENV} (make it: bash "
                    f"benchmarks/suite/openclip_env.sh; OPENCLIP_VENV moves it)")
    if not (FLICKR / "flickr8kval.txt").is_file():
        pytest.skip(f"Flickr8k-CN not at {FLICKR} (the benchmark's photos and eval data)")
    out = tmp_path / "rn50.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this checkout, not the venv's
    subprocess.run([str(python), str(REPO / "benchmarks" / "suite" / "openclip_nine.py"), "--archs",
                    "RN50", "--images", "4", "--captions", "8", "--sample", "4", "--data",
                    str(FLICKR), "--out", str(out)], check=True, env=env, timeout=900)
    result = json.loads(out.read_text())
    assert not result["failed"]
    (row,) = result["rows"]
    assert row["fingerprint"].startswith("random-seed0-") and row["dim"] == 1024
    check = row["check"]
    assert check["same_weights"]
    for side in ("images", "texts"):
        assert check[side]["cos_min"] >= 0.9999 and check[side]["centred_cos_min"] >= 0.999
    assert row["cli"]["image_query_first"] and row["cli"]["caption_query_first"]
    assert row["speed"]["images_per_s"] > 0 and row["speed"]["captions_per_s"] > 0


def test_a_tag_loads_from_open_clip_s_cache_with_its_activation(tmp_path, monkeypatch):
    """A pretrained tag resolves through open_clip's hub cache (offline): a tiny arch with a tag
    registered here stands for `open_clip:RN50` and OpenAI's weights, which are not here."""
    open_clip = pytest.importorskip("open_clip")
    from huggingface_hub import constants
    from safetensors.torch import save_file

    (tmp_path / "crossmodal-tiny-tag.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "crossmodal-tiny-tag.json")
    tags = {"fakeopenai": {"hf_hub": "crossmodal/tiny-tag/", "quick_gelu": True}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "crossmodal-tiny-tag", tags)
    snapshot = tmp_path / "hub" / "models--crossmodal--tiny-tag" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    trained = open_clip.create_model("crossmodal-tiny-tag", force_quick_gelu=True).eval()
    save_file(trained.state_dict(), snapshot / "open_clip_model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    load_encoder.cache_clear()
    enc = load_encoder("open_clip:crossmodal-tiny-tag/fakeopenai")
    load_encoder.cache_clear()
    assert enc.spec.quick_gelu and not enc.fingerprint.startswith("random")
    with torch.inference_mode():
        theirs = trained.encode_text(open_clip.get_tokenizer("crossmodal-tiny-tag")(["a dog"]))
    np.testing.assert_allclose(enc.encode_texts(["a dog"])[0],
                               torch.nn.functional.normalize(theirs, dim=-1)[0], atol=1e-5)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UnknownModelError, match="cannot load open_clip crossmodal-tiny-tag"):
        load_encoder("open_clip:crossmodal-tiny-tag/fakeopenai")  # not cached, offline
    load_encoder.cache_clear()
