"""`crossmodal eval`, `compare` and `classify`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from crossmodal.cli.options import (
    data_options,
    load_data,
    model_option,
    quiet_option,
    with_options,
)
from crossmodal.errors import BadInputError
from crossmodal.storage import atomic_save_json, atomic_write

MAX_STEM_BYTES = 120  # with ".json", a temp file's prefix and suffix: well under 255

def evaluation_options(command):
    """The dataset, protocol and output options `eval` and `compare` share."""
    options = [
        *data_options(),
        click.option("--protocol", type=click.Choice(["full", "5fold"]), default="full",
                     show_default=True,
                     help="full: every image and caption (Flickr 1K test, COCO 5K); 5fold: "
                          "mean of 5 folds of 1K images (COCO 1K)."),
        click.option("--ties", type=click.Choice(["pessimistic", "optimistic"]),
                     default="pessimistic", show_default=True,
                     help="How a negative tied with a positive is ranked."),
        click.option("--sample", type=click.IntRange(min=1), default=None,
                     help="Evaluate on N images drawn at random (with their texts), as "
                          "NewsImages drew 2,000 of 6,855."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of --sample's draw (the same seed draws the same images)."),
        click.option("--out", type=click.Path(path_type=Path), default=Path("eval-results"),
                     show_default=True, help="Folder for the JSON and markdown reports."),
        click.option("--long-text", default="head", show_default=True,
                     help="Texts longer than the model's context: head (the tokenizer's "
                          "cut), tail, chunks (pieces that fit, averaged) or sentences (each "
                          "sentence a piece, averaged); @N caps the tokens, e.g. chunks@64."),
        quiet_option(),
    ]
    return with_options(command, options)


def _write(out: Path, stem: str, reports: list[dict], layouts: list[str]) -> None:
    from crossmodal.evaluation.report import LAYOUTS, describe, markdown_table

    atomic_save_json(out / f"{stem}.json", reports if len(reports) > 1 else reports[0])
    parts = [f"# {stem}\n", describe(reports) + "\n"]
    for layout in layouts:
        parts += [f"## {LAYOUTS[layout].title}\n", markdown_table(reports, layout) + "\n"]
    text = "\n".join(parts)
    atomic_write(out / f"{stem}.md", lambda handle: handle.write(text), mode="w")


def _show(reports: list[dict], layouts: list[str]) -> None:
    from crossmodal.evaluation.report import LAYOUTS, describe, text_table

    for layout in layouts:
        click.echo(f"\n{LAYOUTS[layout].title}")
        click.echo(text_table(reports, layout))
    click.echo(f"\n{describe(reports)}")
    skipped = sum(len(r.get("skipped_images", [])) for r in reports)
    if skipped:
        click.echo(f"{skipped} unreadable images were left out (listed in the JSON)", err=True)


def _evaluation_data(data: str, split: str | None, language: str | None, sample: int | None,
                     seed: int):
    """The dataset the options name, or `sample` of its images drawn with `seed` (said)."""
    dataset = load_data(data, split, language)
    if sample is None:
        return dataset
    drawn = dataset.sample(sample, seed)
    click.echo(f"evaluating {len(drawn)} of {len(dataset)} images drawn at random (seed "
               f"{seed}), with their {len(drawn.texts)} texts", err=True)
    return drawn


def _stem(*parts: str) -> str:
    """A report's file name stem. A long one (a fusion of tower paths) keeps its start and end
    around a hash of the whole, so it stays under file systems' 255-byte name limit."""
    stem = "-".join(p.replace(":", "_").replace("/", "_") for p in parts if p)
    raw = stem.encode("utf-8")
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[:60].decode("utf-8", errors="ignore")
    tail = raw[-40:].decode("utf-8", errors="ignore")
    return f"{head}~{digest}~{tail}"


@click.command("eval")
@model_option(required=True)
@evaluation_options
@click.option("--task", default="image-text", show_default=True,
              help="An evaluator made from the dataset: image-text; image-image: the other "
                   "images of a class (imagefolder:ROOT) are the positives; text-text: the "
                   "other captions of the same image; or a plugin's.")
@click.option("--report", is_flag=True,
              help="Also write one self-contained HTML page: the tables, an embedding map, "
                   "retrieval grids and heat maps (needs the `viz` extra).")
def eval_command(model, data, split, language, protocol, ties, sample, seed, out, long_text,
                 quiet, task, report) -> None:
    """Evaluate MODEL on a dataset: R@1/5/10, Rsum, MedR, MnR, MRR, mAP@R, R-P."""
    from crossmodal.evaluation.evaluators import dataset_evaluator
    from crossmodal.models.long_text import parse_long_text, with_long_text
    from crossmodal.models.registry import load_encoder

    policy = parse_long_text(long_text)  # a bad policy fails before any work
    if report:
        from crossmodal.viz.figures import require_plotting

        if task != "image-text":
            raise BadInputError("--report pictures image-text retrieval: drop --report or "
                                "--task")
        require_plotting()
    dataset = _evaluation_data(data, split, language, sample, seed)
    evaluator = dataset_evaluator(task, dataset, protocol=protocol, ties=ties)
    encoder = with_long_text(load_encoder(model), policy)
    result = evaluator(encoder, progress=not quiet).report
    layouts = list(evaluator.layouts)
    _show([result], layouts)
    stem = _stem("eval", model, dataset.name, "" if task == "image-text" else task,
                 "" if policy.passthrough else f"long-{policy}")
    _write(out, stem, [result], layouts)
    click.echo(f"wrote {out / stem}.json and .md")
    if report:
        _write_html_report(out / f"{stem}.html", encoder, dataset, result, layouts, quiet)
        click.echo(f"wrote {out / stem}.html")


def _write_html_report(path: Path, encoder, dataset, result: dict, layouts: list[str],
                       quiet: bool) -> None:
    from crossmodal.evaluation.report import LAYOUTS
    from crossmodal.viz.report import ReportPage, evaluation_pictures, write_report

    pictures = evaluation_pictures(encoder, dataset, progress=not quiet)
    page = ReportPage(f"{result['model']} on {result['dataset']}", [result],
                      [(LAYOUTS[layout].title, layout) for layout in layouts], pictures)
    write_report(path, page)


@click.command("compare")
@click.option("--models", required=True, help="Comma-separated model ids.")
@evaluation_options
def compare_command(models, data, split, language, protocol, ties, sample, seed, out,
                    long_text, quiet) -> None:
    """One table across models, in the NewsImages and the IConE/CE-CLIP layouts."""
    from crossmodal.evaluation.evaluators import ImageTextEvaluator
    from crossmodal.models.long_text import parse_long_text, with_long_text
    from crossmodal.models.registry import load_encoder

    policy = parse_long_text(long_text)
    dataset = _evaluation_data(data, split, language, sample, seed)
    evaluator = ImageTextEvaluator(dataset, protocol, ties=ties)
    reports = [evaluator(with_long_text(load_encoder(m.strip()), policy), progress=not quiet
                         ).report for m in models.split(",") if m.strip()]
    layouts = ["newsimages", "retrieval"]
    _show(reports, layouts)
    stem = _stem("compare", dataset.name)
    _write(out, stem, reports, layouts)
    click.echo(f"wrote {out / stem}.json and .md")


@click.command("classify")
@model_option(required=True)
@click.option("--images", "images", required=True, type=click.Path(path_type=Path),
              help="A folder with one sub-folder of images per class.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Label texts: 'folder<TAB>label' lines, or one a line in folder order.")
@click.option("--templates", type=click.Path(path_type=Path), default=None,
              help="Prompt templates, one a line, each with '{}' for the label.")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Built-in templates to use when --templates is not given.")
@click.option("--json", "as_json", is_flag=True)
def classify_command(model, images, labels, templates, language, as_json) -> None:
    """Zero-shot classification of class folders from label texts: top-1 / top-5 accuracy."""
    from crossmodal.evaluation.classify import TEMPLATES, read_class_folder, read_templates
    from crossmodal.evaluation.evaluators import ZeroShotEvaluator
    from crossmodal.models.registry import load_encoder

    folder = read_class_folder(images, labels)
    prompts = read_templates(templates) if templates else TEMPLATES[language]
    result = ZeroShotEvaluator(folder, prompts)(load_encoder(model)).report
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=1))
        return
    top = next(k for k in result if k.startswith("top") and k != "top1")
    click.echo(f"{result['model']}: {result['images']} images, {result['classes']} classes, "
               f"{result['templates']} templates")
    click.echo(f"top-1 {result['top1']:.1f}%   {top.replace('top', 'top-')} {result[top]:.1f}%")


COMMANDS = [eval_command, compare_command, classify_command]
