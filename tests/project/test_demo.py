"""`crossmodal demo` with the real shipped model: it prints what it asks, and answers well."""

from __future__ import annotations

from click.testing import CliRunner

from crossmodal.cli.demo import DEMO_MODEL, SHOWCASES, TRY_NEXT, describe_query, run_showcase
from crossmodal.cli.main import cli
from crossmodal.engine import Collection


def test_demo_prints_each_query_and_the_shipped_model_answers_it_first(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--into", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output + str(result.exception)
    for showcase in SHOWCASES:
        header = f"== {showcase.title}\n{describe_query(showcase)}\n"
        assert header in result.output, showcase.title
    assert f'"{TRY_NEXT.query}"' in result.output
    collection = Collection.open(tmp_path / "demo", model=DEMO_MODEL)
    for showcase in (*SHOWCASES, TRY_NEXT):
        top = run_showcase(collection, showcase, k=1)[0]
        assert top.item_id == showcase.expected, (showcase.query, top.id, top.score)


def test_demo_says_which_model_it_uses(tmp_path, fake_encoder):
    result = CliRunner().invoke(cli, ["demo", "--into", str(tmp_path / "demo"), "--model",
                                      "fake:colours"])
    assert result.exit_code == 0, result.output + str(result.exception)
    first = result.output.splitlines()[0]
    assert first.startswith("demo: indexing the sample photos") and "fake:colours" in first
    assert "model, fake:colours, is used" in result.output
    assert f"with {DEMO_MODEL} (reads English and Chinese" in _first_line_for(DEMO_MODEL)


def _first_line_for(model: str) -> str:
    """The line the real demo prints first, without running the model (it fails fast on an
    index folder that is a file)."""
    return CliRunner().invoke(cli, ["demo", "--into", "/dev/null", "--model", model]
                              ).output.splitlines()[0]
