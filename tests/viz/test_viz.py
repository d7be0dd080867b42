"""Pictures (embedding maps, retrieval grids, heat maps) and the HTML evaluation report."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("matplotlib", reason="pictures need the viz extra (matplotlib)")
pytest.importorskip("sklearn", reason="embedding maps need the viz extra (scikit-learn)")

from crossmodal.cli.main import cli  # noqa: E402
from crossmodal.data.dataset import RetrievalDataset  # noqa: E402
from crossmodal.errors import (  # noqa: E402
    BadInputError,
    MissingDependencyError,
    UnknownModelError,
)
from crossmodal.evaluation.embed import DatasetEmbeddings, embed_dataset  # noqa: E402
from crossmodal.viz.embedding_map import (  # noqa: E402
    MapPanel,
    embedding_map_png,
    project_2d,
)
from crossmodal.viz.figures import CORRECT, WRONG, sample_groups  # noqa: E402
from crossmodal.viz.heatmap import cell_embeddings, heatmap_png, text_heatmaps  # noqa: E402
from crossmodal.viz.report import (  # noqa: E402
    ReportPage,
    evaluation_pictures,
    render_report,
)
from crossmodal.viz.retrieval_grid import grid_rows, result_colours, retrieval_grid_png  # noqa: E402
from tests.fakes import FakeEncoder  # noqa: E402
from tests.image_helpers import write_image  # noqa: E402

COLOURS = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250),
           "dark-red": (160, 20, 20), "teal": (10, 160, 160), "grey": (128, 128, 128)}


def png_size(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()
    return image.size


@pytest.fixture
def colour_dataset(tmp_path) -> RetrievalDataset:
    """Six solid-colour images, two captions each; both reds are described as 'red'."""
    dataset = RetrievalDataset("colours")
    for name, rgb in COLOURS.items():
        row = dataset.add_image(name, write_image(tmp_path / f"{name}.png", rgb, (40, 30)))
        word = "red" if name == "dark-red" else name.split("-")[0]
        dataset.add_text(f"a {word} square", row)
        dataset.add_text(f"{word} thing number {row}", row)
    return dataset


# --- retrieval grids ------------------------------------------------------------------------

def test_result_colours_follow_the_ground_truth():
    assert result_colours([4, 2, 7], positives=(2,)) == [WRONG, CORRECT, WRONG]
    assert result_colours([1, 0], positives=[0, 1]) == [CORRECT, CORRECT]
    assert result_colours([3], positives=()) == [WRONG]


def test_grid_rows_rank_and_mark_results():
    # image 0 <-> text 0, image 1 <-> text 1; text 0 prefers image 1 (a retrieval error)
    dataset = RetrievalDataset("toy", ["a", "b", "c"], ["a.png", "b.png", "c.png"],
                               ["caption a", "caption b"], [(0,), (1,)])
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0]], np.float32)
    embeddings = DatasetEmbeddings(images, texts, failed_images=[])
    first, second = grid_rows(dataset, embeddings, "text-to-image", [0, 1], k=2)
    assert first.results == ["b.png", "a.png"] and first.colours == [WRONG, CORRECT]
    assert first.first_correct == 2
    assert second.colours == [CORRECT, WRONG] and second.first_correct == 1
    (row,) = grid_rows(dataset, embeddings, "image-to-text", [1], k=2)
    assert row.results == ["caption b", "caption a"] and row.colours == [CORRECT, WRONG]
    # an unreadable image never shows up as a text->image result
    broken = DatasetEmbeddings(images, texts, failed_images=[(1, "zero-byte file")])
    (row,) = grid_rows(dataset, broken, "text-to-image", [0], k=3)
    assert "b.png" not in row.results[:2] and row.results[0] == "a.png"
    # ... nor as an image->text query (its vector is zeros: its "results" would be noise)
    assert [r.query for r in grid_rows(dataset, broken, "image-to-text", [0, 1], k=2)] == [
        "a.png"]


@pytest.mark.parametrize("direction,size", [("text-to-image", (1120, 630)),
                                            ("image-to-text", (950, 630))])
def test_retrieval_grid_png(colour_dataset, direction, size):
    embeddings = embed_dataset(FakeEncoder(), colour_dataset, progress=False)
    png = retrieval_grid_png(colour_dataset, embeddings, direction, queries=3, k=4)
    assert png_size(png) == size


# --- embedding maps -------------------------------------------------------------------------

def test_sample_groups_is_reproducible_and_bounded(colour_dataset):
    assert sample_groups(colour_dataset, 3, seed=1) == sample_groups(colour_dataset, 3, seed=1)
    assert len(set(sample_groups(colour_dataset, 3))) == 3
    assert sample_groups(colour_dataset, 50) == list(range(6))
    with pytest.raises(BadInputError):
        sample_groups(colour_dataset, 0)


def test_projection_keeps_groups_apart():
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3] * 5
    points = np.concatenate([c + 0.1 * rng.standard_normal((10, 8)) for c in centres])
    xy = project_2d(points.astype(np.float32), "tsne")
    assert xy.shape == (30, 2)
    groups = np.repeat(np.arange(3), 10)
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    same = distances[groups[:, None] == groups[None]].mean()
    assert same < 0.5 * distances[groups[:, None] != groups[None]].mean()
    with pytest.raises(BadInputError, match="unknown projection"):
        project_2d(points, "pca3d")
    if importlib.util.find_spec("umap") is None:
        with pytest.raises(MissingDependencyError, match="umap-learn"):
            project_2d(points, "umap")


def test_recall_within_panel():
    panel = MapPanel("m", np.eye(2, dtype=np.float32),
                     np.array([[1, 0], [0, 1], [1, 0.1]], np.float32), np.array([0, 1, 1]))
    assert panel.recall_at_1() == (100.0, pytest.approx(200 / 3))


def test_embedding_map_side_by_side_png(colour_dataset):
    png = embedding_map_png([FakeEncoder(), FakeEncoder("fake:other", salt="x")],
                            colour_dataset, progress=False)
    assert png_size(png) == (1040, 500)


# --- heat maps ------------------------------------------------------------------------------

class GridColourEncoder(FakeEncoder):
    """A synthetic image tower: a 4x4 feature map whose cells are the fake embedding of each
    cell's mean colour, so the map must light up where the named colour is."""

    def image_feature_map(self, images):
        out = []
        for image in images:
            pixels = np.asarray(image.convert("RGB").resize((16, 16)), np.float32)
            cells = pixels.reshape(4, 4, 4, 4, 3).mean((1, 3))  # (4, 4, rgb)
            tiles = [Image.new("RGB", (2, 2), tuple(int(c) for c in cell))
                     for cell in cells.reshape(-1, 3)]
            out.append(self.encode_images(tiles).reshape(4, 4, -1))
        return np.stack(out)


def half_and_half() -> Image.Image:
    image = Image.new("RGB", (64, 64), COLOURS["blue"])
    image.paste(Image.new("RGB", (32, 64), COLOURS["red"]), (0, 0))  # left half red
    return image


def test_heatmap_lights_up_where_the_text_is():
    crop, (red, blue) = text_heatmaps(GridColourEncoder(), half_and_half(), ["red", "blue"])
    assert crop.size == (8, 8)  # the model-input crop
    assert red.shape == blue.shape == (4, 4)
    assert red[:, :2].min() > red[:, 2:].max()
    assert blue[:, 2:].min() > blue[:, :2].max()


def test_heatmap_png_and_unsupported_models(tmp_path):
    png = heatmap_png(GridColourEncoder(), half_and_half(), ["red", "blue"])
    assert png_size(png) == (960, 380)
    with pytest.raises(UnknownModelError, match="towers"):
        heatmap_png(FakeEncoder(), half_and_half(), ["red"])
    with pytest.raises(BadInputError, match="cannot read"):
        heatmap_png(GridColourEncoder(), tmp_path / "missing.jpg", ["red"])


def test_towers_heatmap_finds_each_half_of_a_two_photo_image():
    """Real towers: a dog photo on the left, a kayak on the right of one 224 px input."""
    from importlib import resources
    from pathlib import Path

    from PIL import ImageOps

    from crossmodal.data.images import load_image
    from crossmodal.models.registry import load_encoder

    samples = Path(str(resources.files("crossmodal") / "samples"))
    image = Image.new("RGB", (224, 224))
    for x, name in ((0, "dog-sand"), (112, "kayak")):
        image.paste(ImageOps.fit(load_image(samples / f"{name}.jpg"), (112, 224)), (x, 0))
    encoder = load_encoder("towers:lite-en")
    assert cell_embeddings(encoder, image).shape == (7, 7, encoder.dim)  # EfficientNet /32
    _, (dog, kayak) = text_heatmaps(encoder, image, ["a dog", "a person in a kayak"])
    assert dog[:, :3].mean() > dog[:, 4:].mean() + 0.05
    assert kayak[:, 4:].mean() > kayak[:, :3].mean() + 0.05


@pytest.mark.parametrize("kind", ["clip", "chinese_clip", "altclip"])
def test_heatmap_of_hf_clip_patch_tokens(tmp_path, kind):
    from tests.hf_helpers import build, load

    encoder = load(build(kind, tmp_path / kind))
    cells = cell_embeddings(encoder, half_and_half())
    assert cells.shape == (4, 4, 16)  # 32 px / 8 px patches
    assert np.allclose(np.linalg.norm(cells, axis=-1), 1.0, atol=1e-5)


# --- report and CLI -------------------------------------------------------------------------

def test_report_has_tables_and_pictures(colour_dataset):
    from crossmodal.evaluation.run import evaluate_model

    encoder = FakeEncoder()
    report = evaluate_model(encoder, colour_dataset, progress=False)
    pictures = evaluation_pictures(encoder, colour_dataset, groups=4, queries=2, k=3,
                                   progress=False)
    page = render_report(ReportPage("fake on colours", [report],
                                    [("Recall", "retrieval"), ("Ranks", "ranks")], pictures))
    assert page.count("<table>") == 2 and "<th>i2t R@1</th>" in page and "<th>t2i MnR</th>" in page
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # embedding map + both grids
    assert all(png_size(base64.b64decode(data)) for data in images)
    assert "not drawn" in page and "does not expose" in page  # the fake has no feature map


def test_plot_commands_and_eval_report(tmp_path, fake_encoder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["image,caption"]
    for name, rgb in COLOURS.items():
        write_image(tmp_path / "imgs" / f"{name}.png", rgb)
        rows += [f"imgs/{name}.png,a {name.split('-')[0]} square"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "data.json"
    spec.write_text(json.dumps({"format": "table", "path": "pairs.csv", "image_root": "."}))
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == code, result.output + str(result.exception)
        return result.output

    run("plot", "embedding-map", "--models", "fake:colours,fake:colours", "--data", spec,
        "--groups", "5", "--quiet", "--out", "map.png")
    assert png_size((tmp_path / "map.png").read_bytes()) == (1040, 500)
    run("plot", "retrieval-grid", "--model", "fake:colours", "--data", spec, "--quiet",
        "--queries", "2", "--out", "grid.html")
    assert '<img src="data:image/png;base64,' in (tmp_path / "grid.html").read_text()
    out = run("plot", "heatmap", "--model", "fake:colours", "--image", "imgs/red.png",
              "--text", "red", code=2)
    assert "error: heat maps need" in out
    out = run("plot", "retrieval-grid", "--model", "fake:colours", "--data", spec,
              "--out", "grid.jpg", code=2)
    assert ".png or .html" in out

    run("eval", "--model", "fake:colours", "--data", spec, "--quiet", "--report")
    (page,) = (tmp_path / "eval-results").glob("eval-*.html")
    text = page.read_text()
    assert "<th>Rsum</th>" in text and text.count('<img src="data:image/png') == 3
    assert not list((tmp_path / "eval-results").glob(".*.tmp"))  # atomic: no leftovers


def test_missing_plot_extra_fails_before_any_work(monkeypatch, fake_encoder):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    result = CliRunner().invoke(cli, ["eval", "--model", "fake:colours", "--data", "nope:x",
                                      "--report"])
    assert result.exit_code == 2 and "crossmodal[viz]" in result.output  # not "unknown format"
    assert fake_encoder.images_seen == 0
