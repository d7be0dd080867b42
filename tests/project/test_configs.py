"""Config files as typed data: unknown keys named with their path at every level, wrong types
as one clear BadInputError, one reader for JSON and TOML, every shipped config loads."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.config_files import read_config_file
from crossmodal.errors import BadInputError
from crossmodal.models.towers import find_tower_config, shipped_towers
from crossmodal.models.towers.config import HeadSpec, TowersConfig
from crossmodal.train.config import TrainConfig
from tests.paths import REPO

RUN = {"model": "towers:lite-en", "train_data": "x", "val_data": "x"}


def tower_file(tmp_path: Path, **changes) -> Path:
    data = find_tower_config("lite-en").to_dict()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        table = data
        for key in parents:
            table = table[key]
        table[last] = value
    path = tmp_path / "tower.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("where,key", [
    ("top", "colour"), ("image", "sise"), ("text", "max_lenght"), ("head", "dimension"),
    ("head__grams", "min_cout"),
])
def test_tower_config_unknown_keys_are_named_with_their_path(tmp_path, where, key):
    path = tower_file(tmp_path, **{(key if where == "top" else f"{where}__{key}"): 1})
    dotted = key if where == "top" else f"{where.replace('__', '.')}.{key}"
    with pytest.raises(BadInputError, match=re.escape(f"unknown keys ['{key}']")) as error:
        TowersConfig.from_file(path)
    assert str(path) in str(error.value)
    if where != "top":
        assert f"at {dotted}" in str(error.value)


@pytest.mark.parametrize("dotted,value,expected", [
    ("head__dim", "wide", "head.dim must be an integer, not 'wide'"),
    ("head__grams__min_count", True, "head.grams.min_count must be an integer, not True"),
    ("image__mean", 0.5, "image.mean must be a list, not 0.5"),
    ("image__mean", [0.5, "x", 0.5], "image.mean[2] must be a number, not 'x'"),
    ("name", 3, "name must be a string, not 3"),
])
def test_tower_config_wrong_types_are_bad_input(tmp_path, dotted, value, expected):
    with pytest.raises(BadInputError, match=re.escape(expected)):
        TowersConfig.from_file(tower_file(tmp_path, **{dotted: value}))


def test_tower_config_missing_key_and_round_trip(tmp_path):
    path = tower_file(tmp_path)
    data = json.loads(path.read_text())
    del data["head"]
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="missing 'head'"):
        TowersConfig.from_file(path)
    for name in shipped_towers():  # tables are kept as written: the caches key on them
        config = find_tower_config(name)
        written = json.loads(config.source.read_text(encoding="utf-8"))
        assert {k: config.to_dict()[k] for k in ("image", "text", "head")} == {
            k: written[k] for k in ("image", "text", "head")}
    assert HeadSpec.of({"dim": 8}).grams is None and HeadSpec.of({}).dim == 256


@pytest.mark.parametrize("data,expected", [
    ({"stages": [{"lr": "fast"}]}, "stages[1].lr must be a number, not 'fast'"),
    ({"stages": [{}, {"max_epochs": 2.5}]}, "stages[2].max_epochs must be an integer, not 2.5"),
    ({"stages": [{"losses": {"infonce": "much"}}]},
     "stages[1].losses.infonce must be a number, not 'much'"),
    ({"seed": None}, "seed must be an integer, not None"),
    ({"stages": {"name": "one"}}, "stages must be a list"),
    ({"teacher": {"dir": "t", "nmae": "x"}}, "unknown keys ['nmae'] at teacher.nmae"),
    ({"teacher": {"dir": "t"}}, "missing 'teacher.name'"),
    ({"stages": [{"epochs": 3}]}, "unknown keys ['epochs'] at stages[1].epochs"),
])
def test_train_config_types_and_nested_keys(data, expected):
    with pytest.raises(BadInputError, match=re.escape(expected)):
        TrainConfig.from_dict({**RUN, **data})


def test_numbers_are_converted_to_the_declared_type():
    config = TrainConfig.from_dict({**RUN, "stages": [{"lr": 1, "losses": {"infonce": 1}}]})
    assert isinstance(config.stages[0].lr, float)
    assert isinstance(config.stages[0].losses["infonce"], float)


def test_wrong_type_in_toml_is_one_clear_line_from_the_cli(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "towers:lite-en"\ntrain_data = "x"\nval_data = "x"\n'
                    '[[stages]]\nlr = "fast"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--config", str(path)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {path}: stages[1].lr must be a number, not 'fast'"], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_one_reader_for_json_and_toml(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_text('{"a": 1}' if suffix == ".json" else "a = 1\n", encoding="utf-8-sig")
    assert read_config_file(path) == {"a": 1}
    path.write_text("{a" if suffix == ".json" else "a = = 1", encoding="utf-8")
    with pytest.raises(BadInputError, match="invalid JSON" if suffix == ".json"
                       else "invalid TOML"):
        read_config_file(path)


def test_toml_reader_on_python_310_is_tomli():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "tomli>=2; python_version < '3.11'" in pyproject
    if sys.version_info < (3, 11):
        import tomli  # noqa: F401  # the fallback the reader uses there


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_training_config_loads(path):
    config = TrainConfig.load(path)
    assert config.stages and config.model.startswith("towers:")


def test_a_config_file_that_is_not_utf8_is_one_clear_error(tmp_path):
    from crossmodal.config_files import read_config_file

    path = tmp_path / "run.toml"
    path.write_bytes("name = \"fillé\"\n".encode("latin-1"))
    with pytest.raises(BadInputError, match=r"run.toml: not UTF-8 text \(byte 0xe9"):
        read_config_file(path)
