"""`crossmodal demo`: index the bundled sample photos and answer three kinds of query."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import click

from crossmodal.cli.search_commands import format_hits

DEMO_MODEL = "towers:lite-zh"  # multilingual text tower: English and Chinese queries alike


def sample_images_dir() -> Path:
    """The sample photos ship inside the package, so the demo works from any install."""
    return Path(str(resources.files("crossmodal") / "samples"))


@click.command("demo")
@click.option("--into", type=click.Path(path_type=Path), default=Path("demo-index"),
              show_default=True, help="Where to build the demo index.")
@click.option("--model", default=DEMO_MODEL, show_default=True)
@click.option("--fresh", is_flag=True, help="Delete a previous demo index first.")
def demo_command(into: Path, model: str, fresh: bool) -> None:
    """Build an index of the sample photos, then search it by English, Chinese and image."""
    from crossmodal.cli.index_commands import print_add_report
    from crossmodal.engine import Collection

    samples = sample_images_dir()
    if fresh and into.exists():
        shutil.rmtree(into)
    collection = Collection.create(into, model=model)
    print_add_report(collection.add_paths([samples], progress=True), into)
    queries = [
        ("text (English) -> images",
         lambda: collection.search_text("a dog playing in the snow", 3)),
        ("text (Chinese) -> images", lambda: collection.search_text("一个人在急流中划船", 3)),
        ("image -> captions", lambda: collection.search_image(samples / "lioness.jpg", 3, "texts")),
        ("image -> similar images", lambda: collection.search_like("dog-grass.jpg", 3)),
    ]
    for title, run in queries:
        hits = run()
        click.echo(f"\n== {title}")
        click.echo(format_hits(hits, hits[0].kind + "s" if hits else "images"))
    click.echo(f"\nTry: crossmodal search {into} \"two people riding bicycles\"")


COMMANDS = [demo_command]
