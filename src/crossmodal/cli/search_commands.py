"""`crossmodal search`: text, image or indexed item as the query; images or texts as targets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crossmodal.cli.targets import INDEX_TARGET
from crossmodal.collection.search_modes import DEFAULT_MODE, MODES


def format_hits(hits, target: str) -> str:
    lines = []
    for hit in hits:
        what = hit.text if target == "texts" else hit.path
        if hit.kind == "image" and hit.text:  # found by the text read in the photo
            what = f"{what}  (reads: {hit.text})"
        lines.append(f"{hit.rank:>3}  {hit.score:+.4f}  {hit.id}  {what}{_photo_note(hit)}")
    return "\n".join(lines) if lines else "(no results)"


def _photo_note(hit) -> str:  # noqa: ANN001 - a collection Hit
    """When and with what the photo was taken, where its EXIF says so."""
    taken = (hit.photo.get("taken") or "").replace("T", " ")[:16]
    shown = "  ".join(part for part in (taken, hit.photo.get("camera")) if part)
    return f"  [{shown}]" if shown else ""


def text_search(index: Path, query: str, k: int, target: str, where: str | None,
                long_text: str, min_score: str | None = None, mode: str | None = None
                ) -> tuple:
    """(collection, hits, language note) of a text query. The model loads and encodes the
    query in a second thread while this one opens the index: on two cores a cold search
    costs the longer of the two, not their sum. Keyword mode loads no model at all."""
    from concurrent.futures import ThreadPoolExecutor

    from crossmodal.collection.collection import parse_filter
    from crossmodal.collection.hybrid import check_min_score, parse_mode, search
    from crossmodal.collection.targets import collection_class
    from crossmodal.errors import BadInputError
    from crossmodal.models.score_thresholds import resolve_min_score

    if not query.strip():
        raise BadInputError("the query text is empty")
    where = parse_filter(where)  # a bad filter, mode or cut-off fails before anything loads
    mode = parse_mode(mode)
    check_min_score(mode, min_score)
    Collection = collection_class(index)  # noqa: N806 - the class of a folder or a URI
    try:
        model, fingerprint = Collection.model_of(index)
    except (FileNotFoundError, NotADirectoryError):
        collection = Collection.open(index)  # it says what is wrong
        return (collection, collection.search_text(query, k, target, where, long_text,
                                                   min_score, mode), collection.query_note(query))
    if mode == "keyword":
        collection = Collection.open(index)
        return collection, search(collection, query, None, k, target, where, None, mode), None
    cutoff = resolve_min_score(min_score, model, fingerprint, query)
    with ThreadPoolExecutor(1) as pool:
        encoded = pool.submit(_encode_query, model, query, long_text)
        collection = Collection.open(index)
        vector, note = encoded.result()
    collection.encoder  # noqa: B018 - the cached encoder, checked against the index now
    return (collection, search(collection, query, vector, k, target, where, cutoff, mode),
            note)


def _encode_query(model: str, query: str, long_text: str):
    from crossmodal.models.language import language_note
    from crossmodal.models.long_text import encode_long_texts, parse_long_text
    from crossmodal.models.registry import load_encoder

    encoder = load_encoder(model)
    vector = encode_long_texts(encoder, [query.strip()], parse_long_text(long_text))
    return vector, language_note(model, tuple(getattr(encoder, "languages", ())), query)


@click.command("search")
@click.argument("index", type=INDEX_TARGET)
@click.argument("query", required=False)
@click.option("--image", "image", type=click.Path(path_type=Path), help="Query by an image file.")
@click.option("--like", "like", help="Query by an indexed item id (or ITEM#K for a caption).")
@click.option("--k", "k", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--target", type=click.Choice(["images", "captions", "texts"]), default=None,
              help="What to return: images or captions ('texts' is the same as captions; "
                   "default: images; for --like, the item's own kind).")
@click.option("--where", default=None,
              help='Metadata filter, e.g. \'source like "beach/%"\', folder=beach, '
                   '\'taken >= "2024-06-01" and camera like "%iPhone%"\', '
                   '\'near(48.85, 2.35, 5km)\' (EXIF date, camera, GPS position).')
@click.option("--long-text", default="head", show_default=True,
              help="A query longer than the model's context: head (the tokenizer's cut), "
                   "tail, chunks (pieces that fit, averaged) or sentences (each sentence a "
                   "piece, averaged); @N caps the tokens.")
@click.option("--min-score", default=None,
              help="Drop hits scoring below this: a raw cosine (e.g. 0.25), or auto / p90 / "
                   "p50, the cut-off calibrated for the index's model (90% / 50% of the "
                   "hits kept relevant on Flickr8k val).")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help=f"For a text query: vector (by meaning), keyword (BM25 over captions, "
                   f"text read off photos and file names: codes, names, rare words) or "
                   f"hybrid (both, by reciprocal rank fusion). Default: {DEFAULT_MODE}.")
@click.option("--plus", "plus", multiple=True, metavar="TERM",
              help="Add a term to the query (repeatable): an image file path, like:ITEM_ID "
                   "for an indexed item, or else text; W:TERM weights it (e.g. '2:beach').")
@click.option("--minus", "minus", multiple=True, metavar="TERM",
              help="Subtract a term from the query (repeatable; read as --plus).")
@click.option("--sort", "sort", default="relevance", show_default=True,
              help="The order of the hits found: relevance, taken (oldest first) or "
                   "taken:desc (newest first), by the photo's EXIF date; hits without one "
                   "come last.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def search_command(index, query, image, like, k, target, where, long_text, min_score,
                   mode, plus, minus, sort, as_json) -> None:
    """Search INDEX by a text QUERY (English or Chinese), --image PATH or --like ITEM_ID;
    --plus / --minus add or subtract more terms (query arithmetic)."""
    from crossmodal.collection.collection import normal_target
    from crossmodal.collection.sorting import parse_sort, sort_hits
    from crossmodal.collection.targets import open_collection
    from crossmodal.errors import BadInputError
    from crossmodal.item_ids import normal_query_id

    target = normal_target(target)
    parse_sort(sort)  # a bad sort fails before anything loads
    given = [x is not None for x in (query, image, like)]
    if sum(given) > 1 or (sum(given) == 0 and not plus):
        raise BadInputError("give exactly one query: a text, --image PATH or --like ITEM_ID")
    if mode is not None and (query is None or plus or minus):
        raise BadInputError("--mode applies to a text query alone (not to --image, --like, "
                            "--plus or --minus)")
    if query is not None and not (plus or minus):
        collection, hits, note = text_search(index, query, k, target or "images", where,
                                             long_text, min_score, mode)
        if note:
            click.echo(note, err=True)
    else:
        collection = open_collection(index)
        min_score = collection.min_score(min_score, query)  # a bad value fails before encoding
    if plus or minus:
        hits = collection.search_combined(
            _terms(query, image, like, plus, minus), k=k, target=target or "images",
            where=where, long_text=long_text, min_score=min_score)
    elif image is not None:
        hits = collection.search_image(image, k=k, target=target or "images", where=where,
                                       min_score=min_score)
    elif like is not None:
        hits = collection.search_like(normal_query_id(like), k=k, target=target, where=where,
                                      min_score=min_score)
        target = target or (hits[0].kind + "s" if hits else "images")
    hits = sort_hits(hits, sort)
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
        return
    click.echo(format_hits(hits, target or "images"))
    if not hits and target == "texts" and not len(collection.texts):
        click.echo(f"hint: {index} holds no captions; add them with `crossmodal index DIR "
                   f"--into {index} --captions FILE` (or a .txt beside each photo), or "
                   "search --target images", err=True)


def _terms(query, image, like, plus, minus) -> list:
    """The query's terms: the base query (a text may carry a weight, 'W:text'; it is text
    even when it names a file), then --plus, then --minus."""
    from crossmodal.item_ids import normal_query_id
    from crossmodal.query_terms import QueryTerm, parse_term, split_weight

    terms = []
    if query is not None:
        weight, text = split_weight(query)
        terms.append(QueryTerm("text", text, weight))
    elif image is not None:
        terms.append(QueryTerm("image", image))
    elif like is not None:
        terms.append(QueryTerm("like", normal_query_id(like)))
    return (terms + [parse_term(t) for t in plus]
            + [parse_term(t, sign=-1.0) for t in minus])


COMMANDS = [search_command]
