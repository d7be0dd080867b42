"""The commands over a collection that lives in Milvus, addressed milvus://HOST:PORT/NAME."""

from __future__ import annotations

import json

from click.testing import CliRunner

from crossmodal.cli.main import cli


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


def test_index_search_info_remove_drop_by_address(milvus_target, colour_folder, fake_encoder,
                                                   tmp_path):
    out = run("index", colour_folder, "--into", milvus_target, "--model", "fake:colours",
              "--quiet").output
    assert "indexed 4 new and 0 changed images (4 captions)" in out
    assert "4 unchanged" in run("index", colour_folder, "--into", milvus_target,
                                "--quiet").output
    hits = json.loads(run("search", milvus_target, "red", "--json", "--k", "2").output)
    assert hits[0]["id"] == "red.jpg" and len(hits) == 2
    filtered = json.loads(run("search", milvus_target, "red", "--json", "--where",
                              "folder = sub").output)
    assert [h["id"] for h in filtered] == ["sub/blue.webp"]
    like = json.loads(run("search", milvus_target, "--like", "red.jpg", "--json").output)
    assert "red.jpg" not in [h["id"] for h in like] and len(like) == 3
    assert "searches by meaning only" in run("search", milvus_target, "red", "--mode",
                                             "keyword", code=2).output
    info = json.loads(run("info", milvus_target).output)
    assert (info["items"], info["texts"], info["model"]) == (4, 4, "fake:colours")
    assert "removed 1 item; 3 remain" in run("remove", milvus_target, "green.png").output
    run("drop", milvus_target, "--yes")
    assert "no crossmodal collection" in run("search", milvus_target, "red", code=2).output
    assert not (tmp_path / "milvus:").exists()  # the address is never taken for a folder


def test_an_empty_folder_leaves_no_collection(milvus_target, tmp_path, fake_encoder):
    (tmp_path / "empty").mkdir()
    out = run("index", tmp_path / "empty", "--into", milvus_target, "--model", "fake:colours",
              code=2).output
    assert "nothing to index" in out
    assert "no crossmodal collection" in run("info", milvus_target, code=2).output
