"""eval-sts: the STS-B reader, Spearman against scipy on a known case, cross-lingual pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import pearsonr, rankdata, spearmanr

from crossmodal.cli.main import cli
from crossmodal.data.sts import load_sts
from crossmodal.errors import BadInputError
from crossmodal.evaluation.sts import (
    average_ranks,
    evaluate_sts,
    evaluate_sts_files,
    pair_cosines,
    pearson,
)

EN = [("a red car", "a red car", 5.0), ("a red car", "a red truck", 4.0),
      ("a blue sky", "a green tree", 0.5), ("red and blue", "blue and red", 4.5),
      ("green grass", "a red apple", 1.0)]
ZH = [("红色的车", "红色的车", 5.0), ("红色的车", "红色的卡车", 4.0), ("蓝天", "绿树", 0.5),
      ("红和蓝", "蓝和红", 4.5), ("绿草", "红苹果", 1.0)]


def write_csv(path, rows):
    path.write_text("".join(f'"{a}","{b}",{s}\n' for a, b, s in rows), encoding="utf-8")
    return path


def test_spearman_is_scipys_on_the_cosines(tmp_path, fake_encoder):
    pairs = load_sts(f"stsb:{write_csv(tmp_path / 'en.csv', EN)}")
    assert len(pairs) == 5 and pairs.first[1] == "a red car" and pairs.scores[2] == 0.5
    cosines = pair_cosines(fake_encoder.encode_texts, pairs)
    a, b = (fake_encoder.encode_texts(side) for side in (pairs.first, pairs.second))
    np.testing.assert_allclose(cosines, (a * b).sum(1), atol=1e-6)
    row = evaluate_sts(fake_encoder.encode_texts, pairs)
    # two pairs have cosine 1 (same words): a tie, however float32 rounds their sums
    expected = 100 * spearmanr(np.round((a * b).sum(1), 6), pairs.scores).statistic
    assert row["spearman"] == pytest.approx(expected, abs=0.01) and row["pairs"] == 5
    # the same cosines against scores in another order correlate worse
    shuffled = evaluate_sts(fake_encoder.encode_texts, type(pairs)(
        "shuffled", pairs.first, pairs.second, pairs.scores[[4, 3, 2, 1, 0]]))
    assert shuffled["spearman"] < row["spearman"]


def test_ranks_and_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 6, 40).astype(float)  # many ties
        y = x + rng.normal(0, 2, 40)
        np.testing.assert_array_equal(average_ranks(x), rankdata(x))
        assert pearson(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
        spearman = pearson(average_ranks(x), average_ranks(y))
        assert spearman == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_two_languages_give_both_crossings(tmp_path, fake_encoder):
    en = load_sts(str(write_csv(tmp_path / "en.csv", EN)))
    zh = load_sts(f"stsb:{write_csv(tmp_path / 'zh.csv', ZH)}")
    rows = evaluate_sts_files(fake_encoder.encode_texts, [en, zh])
    assert [r["data"] for r in rows] == ["en", "zh", "en×zh", "zh×en"]
    crossed = en.crossed(zh)
    assert crossed.first == en.first and crossed.second == zh.second
    with pytest.raises(BadInputError, match="same rows"):
        en.crossed(load_sts(str(write_csv(tmp_path / "short.csv", ZH[:3]))))


def test_bad_files_are_one_line(tmp_path):
    header = tmp_path / "header.csv"
    header.write_text("sentence1,sentence2,score\na,b,1\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="header.csv:1: score 'score' is not a number"):
        load_sts(str(header))
    two = tmp_path / "two.csv"
    two.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="two.csv:1: expected sentence1,sentence2,score"):
        load_sts(str(two))
    with pytest.raises(BadInputError, match="not found"):
        load_sts("stsb:/nope.csv")


def test_the_command_prints_and_writes_rows(tmp_path, fake_encoder):
    en, zh = write_csv(tmp_path / "en.csv", EN), write_csv(tmp_path / "zh.csv", ZH)
    out = tmp_path / "sts.json"
    result = CliRunner().invoke(cli, ["eval-sts", "--model", "fake:colours", "--data",
                                      f"stsb:{en}", "--data", f"stsb:{zh}", "--out", str(out),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "en×zh" in result.output and "Spearman" in result.output
    written = json.loads(out.read_text())
    assert written["model"] == "fake:colours" and len(written["rows"]) == 4
