"""`crossmodal search --mode vector|keyword|hybrid` from the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from tests.keyword_helpers import TARGET, write_shop_folder


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result.output


@pytest.fixture
def index(tmp_path, fake_encoder):
    path = tmp_path / "idx"
    run("index", write_shop_folder(tmp_path / "shop"), "--into", path, "--model",
        "fake:colours", "--quiet")
    return path


def ids(output: str) -> list[str]:
    return [hit["id"] for hit in json.loads(output)]


def test_modes_rank_a_file_name_and_a_code(index):
    assert ids(run("search", index, "2043", "--json", "--k", "5"))[-1] == TARGET  # vector
    assert ids(run("search", index, "2043", "--json", "--mode", "keyword")) == [TARGET]
    assert ids(run("search", index, "XJ-9000", "--json", "--mode", "hybrid"))[0] == TARGET
    text = run("search", index, "星河", "--mode", "keyword", "--target", "captions")
    assert f"{TARGET}#1  星河牌矿泉水" in text


def test_keyword_mode_loads_no_model(index):
    from crossmodal.collection import collection
    from crossmodal.models import registry

    def refuse(model_id):
        raise AssertionError("keyword search loaded the model")

    with pytest.MonkeyPatch.context() as patch:  # undone before the fake backend's teardown
        patch.setattr(registry, "load_encoder", refuse)
        patch.setattr(collection, "load_encoder", refuse)
        assert ids(run("search", index, "IMG_2043", "--json", "--mode", "keyword")) == [TARGET]
        with pytest.raises(AssertionError, match="loaded the model"):  # the check can fail
            run("search", index, "IMG_2043", "--json", "--mode", "hybrid")


def test_bad_uses_of_mode_are_one_line(index):
    bad = run("search", index, "red", "--mode", "bm25", code=2)
    assert "'bm25' is not one of 'vector', 'keyword', 'hybrid'" in bad
    for args in (["--mode", "keyword", "--min-score", "0.2"],
                 ["--mode", "hybrid", "--plus", "blue"]):
        out = run("search", index, "red", *args, code=2)
        assert out.startswith("error:") and len(out.strip().splitlines()) == 1
    assert "not to keyword search" in run("search", index, "red", "--mode", "keyword",
                                          "--min-score", "0.2", code=2)
