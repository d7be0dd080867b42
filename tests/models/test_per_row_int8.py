"""Per-row int8 MatMuls (models/onnx/per_row_int8.py) on raw graphs, against numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import crossmodal.models.onnx.per_row_int8 as per_row_module  # noqa: E402
from crossmodal.models.onnx.per_row_int8 import (  # noqa: E402
    AVX2_SAFE_WEIGHT,
    per_row_int8,
    quantized_columns,
)

RNG = np.random.default_rng(0)
K, N = 24, 10


def graph_file(path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """x [B, T, K] -> MatMul(W1) -> Gemm(W2^T, bias) on the rows: both weight kinds."""
    w1 = RNG.normal(size=(K, N)).astype(np.float32)
    w2 = RNG.normal(size=(N, N)).astype(np.float32)  # Gemm with transB: stored [out, in]
    bias = RNG.normal(size=N).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
             helper.make_node("Reshape", ["h", "rows"], ["h2"]),
             helper.make_node("Gemm", ["h2", "w2", "b"], ["y"], name="second", transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["R", N])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(bias, "b"),
         numpy_helper.from_array(np.array([-1, N], np.int64), "rows")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path, w1, w2, bias


def per_row_reference(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """What the rewrite computes: each row scaled by its own max |x|, 7-bit weight columns."""
    q_w, w_scale = quantized_columns(weight)
    scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True) / 127, 1e-12)
    q_x = np.clip(np.rint(x / scale), -127, 127)
    return (q_x @ q_w.astype(np.float64)) * scale * w_scale


def run_all(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def run(path: Path, x: np.ndarray) -> np.ndarray:
    return run_all(path, x)[0]


def test_per_row_int8_computes_the_per_row_product(tmp_path):
    source, w1, w2, bias = graph_file(tmp_path / "g.onnx")
    assert per_row_int8(source, tmp_path / "q.onnx") == ["first", "second"]
    x = (RNG.normal(size=(3, 5, K)) * RNG.uniform(0.01, 50, size=(3, 5, 1))).astype(np.float32)
    x[1, 2] = 0.0  # an all-zero row keeps a finite scale
    hidden = per_row_reference(x.reshape(-1, K), w1)
    expected = per_row_reference(hidden, w2.T) + bias
    got = run(tmp_path / "q.onnx", x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    exact = (x.reshape(-1, K) @ w1) @ w2.T + bias
    assert np.abs(got - exact).max() < 0.05 * np.abs(exact).max()  # and close to fp32


def test_a_row_does_not_depend_on_the_other_rows(tmp_path):
    """ONNX Runtime's dynamic int8 scales by the whole batch's range: a loud row would change
    every other row's result. Per-row scales leave them bit for bit."""
    source, *_ = graph_file(tmp_path / "g.onnx")
    per_row_int8(source, tmp_path / "q.onnx")
    quiet = RNG.normal(size=(1, 4, K)).astype(np.float32)
    loud = np.concatenate([quiet, 100 * RNG.normal(size=(1, 4, K)).astype(np.float32)])
    np.testing.assert_array_equal(run(tmp_path / "q.onnx", quiet),
                                  run(tmp_path / "q.onnx", loud)[:4])


def test_per_row_int8_keeps_excluded_nodes_and_weights_within_avx2_range(tmp_path):
    source, *_ = graph_file(tmp_path / "g.onnx")
    assert per_row_int8(source, tmp_path / "q.onnx", exclude=["second"]) == ["first"]
    assert per_row_int8(source, tmp_path / "o.onnx", only=["second"]) == ["second"]
    model = onnx.load(str(tmp_path / "q.onnx"))
    ops = [node.op_type for node in model.graph.node]
    assert "Gemm" in ops and "MatMul" not in ops and "MatMulIntegerToFloat" in ops
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer
               if t.data_type == TensorProto.INT8]
    assert max(int(np.abs(w).max()) for w in weights) <= AVX2_SAFE_WEIGHT
    assert {t.name for t in model.graph.initializer} >= {"w2", "b"}
    assert "w1" not in {t.name for t in model.graph.initializer}  # replaced, not carried


def shared_input_graph(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """x [R, K] read by two MatMuls (like query and key): one input, one smoothing Mul."""
    wa = RNG.normal(size=(K, N)).astype(np.float32)
    wb = RNG.normal(size=(K, N)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["ya"], name="a"),
             helper.make_node("MatMul", ["x", "wb"], ["yb"], name="b")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["R", K])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["R", N]) for y in ("ya", "yb")],
        [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, wa, wb


def outlier_rows(rows: int) -> np.ndarray:
    """Rows whose channel 3 is ~60x the others: a transformer's outlier feature."""
    x = RNG.normal(size=(rows, K)).astype(np.float32)
    x[:, 3] *= 60
    return x


def test_smoothing_factors_balance_activation_and_weight_ranges():
    absmax = np.array([4.0, 1.0, 0.0, 9.0], np.float32)
    w1 = np.array([[1.0], [4.0], [1.0], [0.0]], np.float32)
    w2 = np.array([[-1.0], [-16.0], [2.0], [0.0]], np.float32)
    factors = per_row_module.smoothing_factors(absmax, [w1, w2], alpha=0.5)
    # sqrt(4 / 1), sqrt(1 / 16) over both weights' rows; an idle channel or weight row: 1
    np.testing.assert_allclose(factors, [2.0, 0.25, 1.0, 1.0])


def test_smoothing_is_one_shared_mul_and_matches_numpy(tmp_path):
    source, wa, wb = shared_input_graph(tmp_path / "g.onnx")
    x = outlier_rows(16)
    absmax = np.abs(x).max(axis=0)
    ranges = {"a": absmax, "b": absmax}
    per_row_int8(source, tmp_path / "s.onnx", input_absmax=ranges)
    model = onnx.load(str(tmp_path / "s.onnx"))
    muls_on_x = [n for n in model.graph.node if n.op_type == "Mul" and "x" in n.input]
    assert len(muls_on_x) == 1  # query and key share the smoothed input
    factors = per_row_module.smoothing_factors(absmax, [wa, wb])
    got_a, got_b = run_all(tmp_path / "s.onnx", x)
    for got, weight in ((got_a, wa), (got_b, wb)):
        expected = per_row_reference(x / factors, weight * factors[:, None])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_smoothing_lowers_the_error_of_an_outlier_channel(tmp_path):
    """The mechanism, not a number: with one loud channel, per-row scales waste the 8 bits on
    it; smoothing moves that range into the weights and the product gets closer to fp32."""
    source, wa, wb = shared_input_graph(tmp_path / "g.onnx")
    calibration, x = outlier_rows(64), outlier_rows(32)
    ranges = {name: np.abs(calibration).max(axis=0) for name in ("a", "b")}
    per_row_int8(source, tmp_path / "plain.onnx")
    per_row_int8(source, tmp_path / "smooth.onnx", input_absmax=ranges)
    exact = x @ wa
    plain = np.abs(run(tmp_path / "plain.onnx", x) - exact).mean()
    smooth = np.abs(run(tmp_path / "smooth.onnx", x) - exact).mean()
    assert smooth < 0.7 * plain


def test_calibrated_ranges_are_each_inputs_channel_max(tmp_path):
    from crossmodal.models.onnx.calibrate import matmul_input_absmax

    source, w1, *_ = graph_file(tmp_path / "g.onnx")
    feeds = [RNG.normal(size=(2, 3, K)).astype(np.float32) for _ in range(3)]
    ranges = matmul_input_absmax(source, ({"x": x} for x in feeds))
    rows = np.concatenate([x.reshape(-1, K) for x in feeds])
    assert set(ranges) == {"first", "second"}
    np.testing.assert_allclose(ranges["first"], np.abs(rows).max(axis=0))
    # the Gemm reads the first MatMul's output, reshaped to rows
    np.testing.assert_allclose(ranges["second"], np.abs(rows @ w1).max(axis=0), rtol=1e-5)
