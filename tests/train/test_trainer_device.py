"""Where heads train: the GPU in mixed precision where CUDA is present and only cached
features feed them, the CPU otherwise (and always back on the CPU after `fit`)."""

from __future__ import annotations

import pytest
import torch

from crossmodal.models.towers.heads import TowerHeads
from crossmodal.train import trainer as trainer_module
from crossmodal.train.heads import evaluate_heads
from crossmodal.train.trainer import MixedPrecision, StageTrainer, heads_device
from tests.trainer_helpers import STAGES, config, synthetic

CUDA = torch.cuda.is_available()


def test_heads_pick_the_gpu_only_when_there_is_one_and_no_backbone_trains(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert heads_device(None).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert heads_device(None).type == "cuda"
    assert heads_device(object()).type == "cpu"  # backbone blocks run on the CPU
    assert not MixedPrecision(torch.device("cpu")).enabled


def test_cpu_training_is_unchanged_by_the_device_logic(tmp_path, monkeypatch):
    """Without CUDA the run is the plain fp32 CPU run: the same weights as with the
    mixed-precision machinery bypassed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train, val = synthetic(64, 1), synthetic(16, 2)

    def heads() -> TowerHeads:
        torch.manual_seed(0)
        return TowerHeads(12, 10, {"dim": 8})

    a = heads()
    StageTrainer(config(tmp_path / "a", STAGES[:1]), a, train, val, progress=False).fit()

    class Plain(MixedPrecision):
        def step(self, loss, optimizer, params_ready):
            loss.backward()
            params_ready()
            optimizer.step()

    monkeypatch.setattr(trainer_module, "MixedPrecision", Plain)
    b = heads()
    StageTrainer(config(tmp_path / "b", STAGES[:1]), b, train, val, progress=False).fit()
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_heads_train_on_the_gpu_in_mixed_precision(tmp_path):
    train, val = synthetic(256, 3), synthetic(64, 4)
    train.texts = [f"caption {i % 50} of a photo" for i in range(len(train.text))]
    val.texts = [f"caption {i % 50} of a photo" for i in range(len(val.text))]
    torch.manual_seed(0)
    heads = TowerHeads(12, 10, {"dim": 8, "grams": {"unit": "words", "min_count": 1}})
    heads.grams.fit(train.texts)  # the gram bag trains on the GPU too
    before = evaluate_heads(heads, val)["rsum"]
    seen = []
    heads.image.register_forward_hook(lambda _m, _i, out: seen.append((out.device.type,
                                                                       out.dtype)))
    trainer = StageTrainer(config(tmp_path, STAGES), heads, train, val, progress=False)
    best = trainer.fit()
    assert ("cuda", trainer.precision.dtype) in seen  # autocast on the GPU
    assert trainer.precision.dtype in (torch.bfloat16, torch.float16)
    assert all(p.device.type == "cpu" for p in heads.parameters())
    assert best["val"]["rsum"] > before + 30
    reloaded = TowerHeads(12, 10, {"dim": 8, "grams": {"unit": "words", "min_count": 1}})
    reloaded.load(tmp_path / "best.safetensors")
    assert evaluate_heads(reloaded, val)["rsum"] == pytest.approx(best["val"]["rsum"])
