"""`crossmodal plot embedding-map | retrieval-grid | heatmap`: PNG (or self-contained HTML)
pictures of what a model does."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.cli.options import (
    data_options,
    load_data,
    model_option,
    quiet_option,
    with_options,
)
from crossmodal.models.registry import DEFAULT_TOWER


def dataset_options(command):
    """The dataset options of every plot command (same meaning as in `crossmodal eval`)."""
    options = [
        *data_options(),
        click.option("--seed", default=0, show_default=True,
                     help="Which image groups / queries are drawn."),
        quiet_option(),
    ]
    return with_options(command, options)


def _out_option(default: str):
    return click.option("--out", type=click.Path(path_type=Path), default=Path(default),
                        show_default=True, help="Picture to write: .png, or .html (one page "
                                                "with the PNG embedded).")


@click.group("plot")
def plot_group() -> None:
    """Pictures: embedding maps, retrieval grids, where-it-looks heat maps."""


@plot_group.command("embedding-map")
@click.option("--models", required=True,
              help="Comma-separated model ids, one panel each (e.g. a pretrained and a "
                   "fine-tuned model).")
@dataset_options
@click.option("--groups", default=20, show_default=True,
              help="Image groups (an image and its captions) drawn from the dataset.")
@click.option("--method", type=click.Choice(["tsne", "umap"]), default="tsne",
              show_default=True, help="2-D projection (umap needs the umap-learn package).")
@_out_option("embedding-map.png")
def embedding_map_command(models, data, split, language, seed, quiet, groups, method, out):
    """t-SNE/UMAP of image and caption embeddings, coloured by image group, one panel a model."""
    from crossmodal.models.registry import load_encoder
    from crossmodal.viz.embedding_map import embedding_map_png
    from crossmodal.viz.figures import (
        check_picture_path,
        require_plotting,
        sample_groups,
        save_picture,
    )

    require_plotting(method)
    check_picture_path(out)
    dataset = load_data(data, split, language)
    subset = dataset.subset(sample_groups(dataset, groups, seed))
    encoders = [load_encoder(m.strip()) for m in models.split(",") if m.strip()]
    png = embedding_map_png(encoders, subset, method, seed, progress=not quiet)
    save_picture(png, out, f"embedding map: {models} on {dataset.name}")
    click.echo(f"wrote {out} ({len(subset)} image groups, {len(subset.texts)} captions)")


@plot_group.command("retrieval-grid")
@model_option(required=True)
@dataset_options
@click.option("--direction", type=click.Choice(["text-to-image", "image-to-text"]),
              default="text-to-image", show_default=True)
@click.option("--queries", default=4, show_default=True, help="Sample queries (rows).")
@click.option("--k", default=5, show_default=True, help="Results shown per query.")
@_out_option("retrieval-grid.png")
def retrieval_grid_command(model, data, split, language, seed, quiet, direction, queries, k,
                           out):
    """Top-k results of sample queries, ranked over the whole dataset; green = ground truth."""
    from crossmodal.evaluation.embed import embed_dataset
    from crossmodal.models.registry import load_encoder
    from crossmodal.viz.figures import check_picture_path, require_plotting, save_picture
    from crossmodal.viz.retrieval_grid import retrieval_grid_png

    require_plotting()
    check_picture_path(out)
    dataset = load_data(data, split, language)
    embeddings = embed_dataset(load_encoder(model), dataset, progress=not quiet)
    title = f"{model} on {dataset.name}: {direction.replace('-', ' ')}, top {k}"
    png = retrieval_grid_png(dataset, embeddings, direction, queries, k, seed,
                             title + " (green = ground truth, red = not)")
    save_picture(png, out, title)
    click.echo(f"wrote {out}")


@plot_group.command("heatmap")
@model_option(help="A towers:* model, or an hf: CLIP / Chinese-CLIP / AltCLIP model.",
              default=DEFAULT_TOWER)
@click.option("--image", "image", required=True, type=click.Path(path_type=Path),
              help="The image.")
@click.option("--text", "texts", required=True, multiple=True,
              help="A text query; repeat for several maps side by side.")
@_out_option("heatmap.png")
def heatmap_command(model, image, texts, out):
    """Where the image tower matches each text: cosine per feature-map cell, over the image."""
    from crossmodal.models.registry import load_encoder
    from crossmodal.viz.figures import check_picture_path, require_plotting, save_picture
    from crossmodal.viz.heatmap import heatmap_png

    require_plotting()
    check_picture_path(out)
    png = heatmap_png(load_encoder(model), image, texts, f"{model}: {image.name}")
    save_picture(png, out, f"heat map: {image.name}")
    click.echo(f"wrote {out}")


COMMANDS = [plot_group]
