from __future__ import annotations

import numpy as np
import pytest

from crossmodal.errors import BadInputError, NonFiniteError
from crossmodal.evaluation.classify import (
    TEMPLATES,
    read_class_folder,
    read_templates,
    zero_shot_accuracy,
)
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.evaluation.report import markdown_table, text_table
from crossmodal.evaluation.run import evaluate_model
from tests.evaluation.conftest import COLOURS
from tests.image_helpers import write_image


def test_evaluation_is_correct_and_cached(colour_dataset, fake_encoder):
    report = evaluate_model(fake_encoder, colour_dataset, progress=False)
    assert report["rsum"] == 600.0 and report["cached_embeddings"] is False
    assert report["text_to_image"]["R@100"] == 100.0 and report["image_to_text"]["MRR"] == 1.0
    seen = fake_encoder.images_seen
    again = evaluate_model(fake_encoder, colour_dataset, progress=False)
    assert again["cached_embeddings"] is True and fake_encoder.images_seen == seen
    assert again["rsum"] == report["rsum"]


def test_unreadable_images_are_left_out_and_reported(colour_dataset, fake_encoder, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    row = colour_dataset.add_image("broken", tmp_path / "broken.png")
    colour_dataset.add_text("a broken square", row)
    report = evaluate_model(fake_encoder, colour_dataset, progress=False)
    assert report["images"] == 3 and report["texts"] == 6
    assert report["skipped_images"][0]["image"] == "broken"
    assert embed_dataset(fake_encoder, colour_dataset, progress=False).failed_images[0][0] == 3


def test_non_finite_embeddings_are_refused_before_ranking(colour_dataset, fake_encoder,
                                                          monkeypatch):
    real = fake_encoder.encode_texts
    def broken(texts):
        vectors = real(texts)
        vectors[: len(vectors) // 2] = np.nan
        return vectors
    monkeypatch.setattr(fake_encoder, "encode_texts", broken)
    with pytest.raises(NonFiniteError, match="fake:colours on colours: 0 of 3 image rows and "
                                             "3 of 6 text rows hold NaN or inf"):
        evaluate_model(fake_encoder, colour_dataset, progress=False)
    monkeypatch.setattr(fake_encoder, "encode_texts", real)  # the bug fixed, same weights
    report = evaluate_model(fake_encoder, colour_dataset, progress=False)
    assert report["rsum"] == 600.0 and report["cached_embeddings"] is False


def test_tables_in_both_layouts(colour_dataset, fake_encoder):
    report = evaluate_model(fake_encoder, colour_dataset, progress=False)
    table = markdown_table([report, report], "retrieval")
    assert table.count("\n") == 3 and " Rsum " in table.splitlines()[0]
    assert "600.0" in table
    news = text_table([report], "newsimages")
    assert news.splitlines()[0].split()[2:] == ["MRR", "R@5", "R@10", "R@20", "R@50", "R@100"]


def test_zero_shot_classification(tmp_path, fake_encoder):
    root = tmp_path / "classes"
    for name, rgb in COLOURS.items():
        for i in range(3):
            shade = tuple(max(0, c - 20 * i) for c in rgb)
            write_image(root / name / f"{i}.png", shade)
    labels = tmp_path / "labels.txt"
    labels.write_text("blue\tblue\ngreen\tgreen\nred\tred\n", encoding="utf-8")
    folder = read_class_folder(root, labels)
    result = zero_shot_accuracy(fake_encoder, folder, ["{}"], progress=False)
    assert result["top1"] == 100.0 and result["images"] == 9
    assert result["per_class_top1"] == {"blue": 100.0, "green": 100.0, "red": 100.0}
    # Wrong labels make it fail: the test can fail.
    labels.write_text("green\nred\nblue\n", encoding="utf-8")
    wrong = zero_shot_accuracy(fake_encoder, read_class_folder(root, labels), ["{}"],
                               progress=False)
    assert wrong["top1"] == 0.0


def test_classification_input_errors(tmp_path):
    (tmp_path / "one").mkdir()
    with pytest.raises(BadInputError, match="at least two class"):
        read_class_folder(tmp_path)
    (tmp_path / "two").mkdir()
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="3 labels for 2 class folders"):
        read_class_folder(tmp_path, labels)
    templates = tmp_path / "t.txt"
    templates.write_text("a photo\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="needs a"):
        read_templates(templates)
    assert all("{}" in t for lang in TEMPLATES for t in TEMPLATES[lang])


def test_embeddings_are_float32_rows(colour_dataset, fake_encoder):
    emb = embed_dataset(fake_encoder, colour_dataset, progress=False, use_cache=False)
    assert emb.images.dtype == np.float32 and emb.texts.shape == (6, fake_encoder.dim)
