"""`crossmodal demo`: index the bundled sample photos and answer four kinds of query."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

from crossmodal.cli.search_commands import format_hits
from crossmodal.models.registry import DEFAULT_MODEL

DEMO_MODEL = DEFAULT_MODEL  # the demo shows what `crossmodal index` gives: English and Chinese


@dataclass(frozen=True)
class Showcase:
    """One demo query and the item the shipped model ranks first (tests/project/test_demo.py holds
    it, so a model change that breaks the showcase fails a test)."""

    title: str
    kind: str  # "text" (query text -> images), "image" (sample photo -> captions), "like"
    query: str  # the text, or a sample photo's file name
    expected: str  # item id of the top answer (for captions: the item they belong to)


SHOWCASES = (
    Showcase("text (English) -> images", "text", "a dog playing in the snow",
             "white-dog-snow.jpg"),
    Showcase("text (Chinese) -> images", "text", "一个人在急流中划船", "kayak.jpg"),
    Showcase("image -> captions", "image", "motorcycle.jpg", "motorcycle.jpg"),
    Showcase("image -> similar images", "like", "two-dogs.jpg", "dog-grass.jpg"),
)
TRY_NEXT = Showcase("suggested next query", "text", "two people riding bicycles", "cyclists.jpg")


def sample_images_dir() -> Path:
    """The sample photos ship inside the package, so the demo works from any install."""
    return Path(str(resources.files("crossmodal") / "samples"))


def run_showcase(collection, showcase: Showcase, k: int = 3) -> list:
    """The hits of one showcase query on a collection of the sample photos."""
    if showcase.kind == "text":
        return collection.search_text(showcase.query, k)
    if showcase.kind == "image":
        return collection.search_image(sample_images_dir() / showcase.query, k, "texts")
    return collection.search_like(showcase.query, k)


def describe_query(showcase: Showcase) -> str:
    """What was asked, so a reader can judge the answers."""
    if showcase.kind == "text":
        return f'query: "{showcase.query}"'
    path = sample_images_dir() / showcase.query
    if showcase.kind == "image":
        return f"query: the photo {path}"
    return f"query: the indexed photo {showcase.query} ({path})"


@click.command("demo")
@click.option("--into", type=click.Path(path_type=Path), default=Path("demo-index"),
              show_default=True, help="Where to build the demo index.")
@click.option("--model", default=DEMO_MODEL, show_default=True)
@click.option("--fresh", is_flag=True, help="Delete a previous demo index first.")
def demo_command(into: Path, model: str, fresh: bool) -> None:
    """Build an index of the sample photos, then search it by English, Chinese and image."""
    from crossmodal.cli.index_commands import print_add_report
    from crossmodal.collection.collection import Collection
    if fresh and into.exists():
        shutil.rmtree(into)
    why = " (reads English and Chinese; the default of every command)" \
        if model == DEFAULT_MODEL else ""
    click.echo(f"demo: indexing the sample photos into {into} with {model}{why}")
    collection = Collection.create(into, model=model)
    print_add_report(collection.add_paths([sample_images_dir()], progress=True), into)
    for showcase in SHOWCASES:
        hits = run_showcase(collection, showcase)
        click.echo(f"\n== {showcase.title}")
        click.echo(describe_query(showcase))
        click.echo(format_hits(hits, hits[0].kind + "s" if hits else "images"))
    click.echo(f"\nTry: crossmodal search {into} \"{TRY_NEXT.query}\"  (this index's model, "
               f"{collection.manifest.model}, is used: no --model needed)")


COMMANDS = [demo_command]
