"""Losses as data: the registry builds each loss from a TOML table and each describes its
config; one Temperature that the trainer clamps; no weight decay on 1-D parameters."""

from __future__ import annotations

import math
import re

import pytest
import torch

from crossmodal.config_files import tomllib
from crossmodal.errors import BadInputError
from crossmodal.losses.registry import LOSSES, build_loss
from crossmodal.losses.temperature import Temperature
from crossmodal.train.config import TrainConfig
from crossmodal.train.trainer import StageTrainer
from tests.trainer_helpers import config, heads, synthetic

# A non-default value for every hyper-parameter of every registered loss.
TABLES = """
[loss_params.infonce]
tau = 0.2
learnable = false
min_tau = 0.02
max_tau = 0.5

[loss_params.instance]
image_weight = 0.3
text_weight = 0.7
normalize = false
scale = 16

[loss_params.csa]
tau = 0.3
learnable = true
min_tau = 0.2
max_tau = 0.9
teacher_tau = 0.5

[loss_params.usa]
tau = 0.6
learnable = false
min_tau = 0.15
max_tau = 0.95
teacher_tau = 2.0
"""


def test_every_registered_loss_builds_from_a_toml_table_and_describes_its_config():
    tables = tomllib.loads(TABLES)["loss_params"]
    assert sorted(tables) == sorted(LOSSES)  # the tables above cover the whole registry
    for name, table in tables.items():
        loss = build_loss(name, table, dim=4, num_instances=3)
        assert isinstance(loss, LOSSES[name].cls)
        described = loss.get_config_dict()
        assert described == pytest.approx(table), name
        again = build_loss(name, described, dim=4, num_instances=3)  # a description rebuilds
        assert again.get_config_dict() == described


def test_the_config_carries_loss_params_and_the_trainer_uses_them(tmp_path):
    text = ('model = "towers:lite-en"\ntrain_data = "x"\nval_data = "x"\n'
            f'output_dir = "{tmp_path}"\n[[stages]]\nlosses = {{ infonce = 1.0 }}\n'
            '[loss_params.infonce]\ntau = 0.08\n')
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    loaded = TrainConfig.load(path)
    trainer = StageTrainer(loaded, heads(), synthetic(16, 1), synthetic(8, 2), progress=False)
    # the table's tau over the recipe's bounds (CUSA's [0.01, 0.1])
    assert trainer.losses["infonce"].get_config_dict() == {
        "tau": 0.08, "learnable": True, "min_tau": 0.01, "max_tau": 0.1}
    assert "loss_params" in loaded.to_dict()
    assert "loss_params" not in config(tmp_path, [{}]).to_dict()  # unset: config.json as before


@pytest.mark.parametrize("params,message", [
    ({"triplet": {}}, "unknown loss 'triplet' (known: infonce, instance, csa, usa)"),
    ({"infonce": {"tua": 0.1}}, "unknown keys ['tua'] at loss_params.infonce.tua"),
    ({"instance": {"dim": 8}}, "unknown keys ['dim'] at loss_params.instance.dim"),
    ({"infonce": {"tau": "cold"}}, "loss_params.infonce.tau must be a number, not 'cold'"),
])
def test_bad_loss_params_are_clear_errors(tmp_path, params, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        config(tmp_path, [{}], loss_params=params)


def test_unknown_loss_name_in_build_lists_the_known_ones():
    with pytest.raises(BadInputError, match="known: infonce, instance, csa, usa"):
        build_loss("triplet")


def test_a_tau_pushed_past_its_bound_comes_back_and_can_move_away_again():
    tau = Temperature(0.05, min_tau=0.01, max_tau=0.1)
    optimizer = torch.optim.SGD(tau.parameters(), lr=10.0)
    (-tau()).backward()  # a larger scale lowers this loss: the step overshoots the bound
    optimizer.step()
    assert tau.log_scale.item() > math.log(100)
    assert tau.log_scale.grad.item() != 0
    tau.clamp_()
    assert math.isclose(tau.log_scale.item(), math.log(100), rel_tol=1e-6)
    optimizer.zero_grad()
    tau().backward()  # now the loss wants a smaller scale: from the bound, the gradient acts
    assert tau.log_scale.grad.item() != 0
    optimizer.step()
    assert tau.log_scale.item() < math.log(100)


def test_the_trainer_clamps_every_temperature_infonce_included(tmp_path):
    stages = [{"name": "hot", "losses": {"infonce": 1.0}, "lr": 0.5, "warmup": 0,
               "max_epochs": 2, "batch_size": 16}]
    trainer = StageTrainer(config(tmp_path, stages), heads(), synthetic(64, 3), synthetic(16, 4),
                          progress=False)
    trainer.fit()
    temperatures = [m for m in trainer.losses.modules() if isinstance(m, Temperature)]
    assert trainer.losses["infonce"].tau in temperatures
    for tau in temperatures:
        stored = tau.log_scale.item()
        low, high = math.log(1 / tau.max_tau), math.log(1 / tau.min_tau)
        assert low - 1e-6 <= stored <= high + 1e-6


def test_no_weight_decay_on_one_dimensional_parameters(tmp_path):
    stages = [{"losses": {"infonce": 1.0, "instance": 1.0, "csa": 0.1, "usa": 0.5}, "wd": 0.1}]
    cfg = config(tmp_path, stages, teacher={"dir": str(tmp_path), "name": "t"})
    model = torch.nn.ModuleDict({"heads": heads()})
    trainer = StageTrainer(cfg, model["heads"], synthetic(32, 5), synthetic(8, 6), progress=False)
    optimizer, _ = trainer._optimizer(cfg.stages[0])
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups
                for p in group["params"]}
    named = {**{f"heads.{n}": p for n, p in trainer.heads.named_parameters()},
             **{f"losses.{n}": p for n, p in trainer.losses.named_parameters()},
             **{f"uni.{n}": p for n, p in trainer.uni.named_parameters()}}
    assert {"heads.logit_scale", "losses.infonce.tau.log_scale", "losses.csa.tau.log_scale",
            "uni.image.bias"} <= set(named)
    for name, param in named.items():
        assert id(param) in decay_of, name  # every trainable part of this stage is optimised
        assert decay_of[id(param)] == (0.1 if param.ndim >= 2 else 0.0), name
