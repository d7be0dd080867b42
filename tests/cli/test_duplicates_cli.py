"""`crossmodal duplicates`: the grouped listing, --json, and one line for bad input."""

from __future__ import annotations

import json

from click.testing import CliRunner

from crossmodal.cli.main import cli
from tests.duplicate_helpers import write_copies_folder


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


def run(*args, code=0):
    return invoke(*args, code=code).stdout if code == 0 else invoke(*args, code=code).output


def test_duplicates_listing_and_json(tmp_path, fake_encoder):
    folder = write_copies_folder(tmp_path / "photos")
    index = tmp_path / "index"
    run("index", folder, "--into", index, "--model", "fake:colours", "--quiet")
    done = invoke("duplicates", index, "--threshold", "0.99", "--quiet")
    listing = done.stdout
    assert listing.startswith("2 groups, 2 duplicates among 5 images (cosine >= 0.9900 by "
                              "fake:colours, perceptual hashes within 11 bits)")
    # one colour each: nothing for a perceptual hash to see, and the user is told
    assert "note: 5 images compared by vector only" in done.stderr
    assert "group 1: 2 images, exact copies" in listing
    assert "group 2: 2 images, near-duplicates" in listing
    assert "same file as " in listing and "blue.png" not in listing
    found = json.loads(run("duplicates", index, "--threshold", "0.99", "--json"))
    assert found["model"] == "fake:colours" and found["duplicates"] == 2
    assert [sorted(m["id"] for m in g["members"]) for g in found["groups"]] == [
        ["copy/green.png", "green.png"], ["red.jpg", "small/red.png"]]
    run("remove", index, "green.png")
    one = run("duplicates", index, "--threshold", "0.99", "--quiet")
    assert one.startswith("1 group, 1 duplicate among 4 images")


def test_bad_input_is_one_line(tmp_path, fake_encoder):
    folder = write_copies_folder(tmp_path / "photos")
    index = tmp_path / "index"
    run("index", folder, "--into", index, "--model", "fake:colours", "--quiet")
    for bad in ("0", "1.5", "high"):
        out = run("duplicates", index, "--threshold", bad, code=2)
        assert out.startswith("error: --threshold must be a cosine in (0, 1]")
        assert out.count("\n") == 1
    out = run("duplicates", tmp_path / "photos", code=2)
    assert out.startswith("error: no crossmodal index at") and out.count("\n") == 1
    out = run("duplicates", index, code=2)  # no calibrated threshold for this model
    assert out.startswith("error: no calibrated duplicate threshold for model 'fake:colours'")
