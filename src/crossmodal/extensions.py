"""Every extension point of crossmodal: what is chosen by name, where its Registry lives, the
entry-point group a plugin registers in, and what an entry must be (as llm's hookspecs.py).

A plugin package adds entries in its pyproject.toml, e.g.

    [project.entry-points."crossmodal.backends"]
    mymodel = "mypackage.crossmodal_plugin:load"

docs/design/extensions.md is this list as a page (`markdown()`; a test keeps them equal).
"""

from __future__ import annotations

from typing import NamedTuple


class ExtensionPoint(NamedTuple):
    kind: str  # what an entry is, as the registry names it in messages
    registry: str  # "module:attribute" of its Registry
    group: str  # the entry-point group plugins register in
    entry: str  # what an entry must be (its protocol)


EXTENSION_POINTS: tuple[ExtensionPoint, ...] = (
    ExtensionPoint("model backend", "crossmodal.models.registry:_BACKENDS",
                   "crossmodal.backends",
                   "loader(name, model_id) -> Encoder (crossmodal.models.protocol); "
                   "the name is the model id's prefix"),
    ExtensionPoint("image backbone", "crossmodal.models.towers.backbones:IMAGE_BACKBONES",
                   "crossmodal.image_backbones",
                   "builder(ImageSpec) -> torch module with out_dim (and blocks/run_blocks "
                   "to fine-tune its top blocks)"),
    ExtensionPoint("text backbone", "crossmodal.models.towers.backbones:TEXT_BACKBONES",
                   "crossmodal.text_backbones",
                   "builder(TextSpec) -> torch module with out_dim (and blocks/run_blocks "
                   "to fine-tune its top blocks)"),
    ExtensionPoint("ONNX exporter", "crossmodal.models.onnx.graphs:EXPORTERS",
                   "crossmodal.exporters",
                   "plan(encoder) -> ExportPlan (crossmodal.models.onnx.graphs); the name is "
                   "the model id's prefix"),
    ExtensionPoint("dataset format", "crossmodal.data.registry:FORMATS", "crossmodal.formats",
                   "DatasetFormat(reader, path_params): reader(**arguments) -> "
                   "RetrievalDataset (crossmodal.data.dataset)"),
    ExtensionPoint("loss", "crossmodal.losses.registry:LOSSES", "crossmodal.losses",
                   "LossSpec (crossmodal.losses.registry): a torch loss class on raw "
                   "tensors and how it is called on a batch"),
    ExtensionPoint("vector store", "crossmodal.index.stores:STORE_BACKENDS",
                   "crossmodal.stores",
                   "StoreBackend (crossmodal.index.stores): parse, new, load, drop of "
                   "VectorStore (crossmodal.index.protocol)"),
    ExtensionPoint("teacher", "crossmodal.train.teachers:TEACHERS", "crossmodal.teachers",
                   "factory(spec, rest after the prefix) -> Teacher "
                   "(crossmodal.train.teacher_models)"),
    ExtensionPoint("trainer", "crossmodal.train.run:TRAINERS", "crossmodal.trainers",
                   "trainer(TrainConfig, name, resume, progress) -> summary dict; the name "
                   "is the model id's prefix"),
    ExtensionPoint("evaluator", "crossmodal.evaluation.evaluators:EVALUATORS",
                   "crossmodal.evaluators",
                   "factory(data, **options) -> Evaluator "
                   "(crossmodal.evaluation.evaluators): called on an encoder, returns an "
                   "Evaluation with its primary metric"),
)


def markdown() -> str:
    """The extension points as the page docs/design/extensions.md."""
    lines = [
        "# Extension points",
        "",
        "Everything crossmodal chooses by name goes through one `Registry` "
        "(`crossmodal.registry`). Built-ins register in code; a plugin package registers "
        "through the entry-point group below, e.g. in its `pyproject.toml`:",
        "",
        "```toml",
        '[project.entry-points."crossmodal.backends"]',
        'mymodel = "mypackage.crossmodal_plugin:load"',
        "```",
        "",
        "An entry point is imported only when its name is used; a built-in name wins over a "
        "plugin's. This page is generated from `crossmodal/extensions.py`:",
        "`python -c 'from crossmodal.extensions import markdown; print(markdown(), end=\"\")' "
        "> docs/design/extensions.md`.",
        "",
        "| kind | registry | entry-point group | an entry is |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {p.kind} | `{p.registry}` | `{p.group}` | {p.entry} |"
              for p in EXTENSION_POINTS]
    return "\n".join(lines) + "\n"
