"""int8 MatMuls with one activation scale per row (per token), so a caption's vector depends
on that caption alone.

ONNX Runtime's dynamic int8 (`quantize_dynamic`) scales each MatMul's input by the largest
activation of the whole batch, so the same caption got another vector in another batch: on
lite-en image->text R@1 moved by up to 1.5 points between batchings of the same val captions,
and a query's vector was not the vector its text had been indexed with. Here each row of a
MatMul's input (one token of one caption) is quantised with its own scale, the per-token
scheme of LLM int8 inference; it is also tighter (lite-en, 2,000 train captions, the same
MatMuls kept fp32: embedding error 0.0024 -> 0.0011).

For x @ W with a constant W [K, N], x flattened to rows [R, K]:
    s     = max|x_r| / 127 per row; q = QuantizeLinear(x, s, 128) (uint8, per-row axis 0)
    Wq, w = int8 weights per column within +-64 (exact on AVX2 and VNNI, see quantize.py)
    x @ W ~ s * MatMulIntegerToFloat(q, Wq, 1, w, 128, 0)
The zero point is 128 for every row, so MatMulIntegerToFloat's one zero point fits, and the
kernel is the u8s8 one ONNX Runtime's dynamic int8 runs.

Smoothing (SmoothQuant, Xiao et al. 2023), where a model ships calibrated input ranges: a few
input channels of a transformer's MatMuls carry most of the range (outlier features), so one
scale per row spends the 8 bits on them. Each channel c is divided by
f_c = max|x_c| ** alpha / max|W_c| ** (1 - alpha) and W's row c multiplied by it (exact in
real numbers), which moves range from activations into weights. MatMuls that share an input
(query, key, value) share f and its Mul. On lite-en (train captions, no MatMul kept fp32)
it halved the embedding error (0.0042 -> 0.0019; alpha 0.3 / 0.7 gave 0.0026 / 0.0022).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

AVX2_SAFE_WEIGHT = 64  # int8 weights within +-64: pairs with uint8 activations fit int16
TINY_SCALE = 1e-12  # an all-zero row keeps a finite scale
ROW_ZERO_POINT = 128
SMOOTHING_ALPHA = 0.5  # SmoothQuant's default; the best of 0.3 / 0.5 / 0.7 on lite-en train
MIN_FACTOR = 1e-5  # a channel that never fires keeps a finite factor


def quantized_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights per column within +-AVX2_SAFE_WEIGHT, and each column's scale."""
    scale = np.abs(weight).max(axis=0) / AVX2_SAFE_WEIGHT
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -AVX2_SAFE_WEIGHT, AVX2_SAFE_WEIGHT).astype(np.int8)
    return q, scale


def constant_weight(node, initializers: dict) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(W as [K, N], bias or None) of a MatMul/Gemm whose weight is a constant, else None."""
    from onnx import helper, numpy_helper

    if node.op_type not in ("MatMul", "Gemm") or node.input[1] not in initializers:
        return None
    weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
    if weight.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return weight, None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if attributes.get("transA", 0) or (has_bias and node.input[2] not in initializers):
        return None
    if attributes.get("transB", 0):
        weight = weight.T
    bias = None
    if has_bias:
        bias = attributes.get("beta", 1.0) * numpy_helper.to_array(
            initializers[node.input[2]]).astype(np.float32)
    return attributes.get("alpha", 1.0) * weight, bias


def _constants(prefix: str, weight: np.ndarray, bias: np.ndarray | None) -> list:
    from onnx import numpy_helper

    q, scale = quantized_columns(weight)
    arrays = {"Wq": q, "w_scale": scale, "rows_k": np.array([-1, weight.shape[0]], np.int64),
              "flat": np.array([-1], np.int64), "n": np.array([weight.shape[1]], np.int64),
              "first": np.array([0], np.int64), "inv127": np.array(1 / 127, np.float32),
              "tiny": np.array(TINY_SCALE, np.float32), "one": np.array(1.0, np.float32),
              "zp": np.array(ROW_ZERO_POINT, np.uint8), "w_zp": np.array(0, np.int8)}
    if bias is not None:
        arrays["bias"] = bias
    return [numpy_helper.from_array(value, f"{prefix}/{name}") for name, value in arrays.items()]


def _replacement(node, weight: np.ndarray, bias: np.ndarray | None, index: int
                 ) -> tuple[list, list]:
    """The nodes and initializers that replace one MatMul/Gemm (the `index`-th rewritten)."""
    from onnx import helper, numpy_helper

    p = f"{node.name or 'matmul'}/per_row{index}"  # unique even where nodes have no name
    x, out = node.input[0], node.output[0]
    zero_points = numpy_helper.from_array(np.array([ROW_ZERO_POINT], np.uint8))
    make = helper.make_node
    nodes = [
        make("Reshape", [x, f"{p}/rows_k"], [f"{p}/x"]),
        # max|x| as max(max, -min): two reads of x instead of Abs's write and read
        make("ReduceMax", [f"{p}/x"], [f"{p}/hi"], axes=[1], keepdims=1),
        make("ReduceMin", [f"{p}/x"], [f"{p}/lo"], axes=[1], keepdims=1),
        make("Neg", [f"{p}/lo"], [f"{p}/minus_lo"]),
        make("Max", [f"{p}/hi", f"{p}/minus_lo"], [f"{p}/absmax"]),
        make("Mul", [f"{p}/absmax", f"{p}/inv127"], [f"{p}/s0"]),
        make("Max", [f"{p}/s0", f"{p}/tiny"], [f"{p}/s"]),
        make("Reshape", [f"{p}/s", f"{p}/flat"], [f"{p}/s_rows"]),
        make("Shape", [f"{p}/s_rows"], [f"{p}/row_count"]),
        make("ConstantOfShape", [f"{p}/row_count"], [f"{p}/zp_rows"], value=zero_points),
        make("QuantizeLinear", [f"{p}/x", f"{p}/s_rows", f"{p}/zp_rows"], [f"{p}/q"], axis=0),
        make("MatMulIntegerToFloat",
             [f"{p}/q", f"{p}/Wq", f"{p}/one", f"{p}/w_scale", f"{p}/zp", f"{p}/w_zp"],
             [f"{p}/y_w"], domain="com.microsoft", name=node.name),
        make("Mul", [f"{p}/y_w", f"{p}/s"], [f"{p}/y"]),
        make("Shape", [x], [f"{p}/x_shape"]),
        make("Slice", [f"{p}/x_shape", f"{p}/first", f"{p}/flat"], [f"{p}/lead"]),
        make("Concat", [f"{p}/lead", f"{p}/n"], [f"{p}/y_shape"], axis=0),
        make("Reshape", [f"{p}/y", f"{p}/y_shape"], [out if bias is None else f"{p}/no_bias"]),
    ]
    if bias is not None:
        nodes.append(make("Add", [f"{p}/no_bias", f"{p}/bias"], [out]))
    return nodes, _constants(p, weight, bias)


def smoothing_factors(absmax: np.ndarray, weights: Sequence[np.ndarray],
                      alpha: float = SMOOTHING_ALPHA) -> np.ndarray:
    """f per input channel for MatMuls that share one input: max|x_c|^a / max|W_c|^(1-a),
    W_c over all their weights' row c; 1 where a channel or its weights are all zero."""
    weight_range = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    absmax = np.asarray(absmax, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = absmax ** alpha / weight_range ** (1 - alpha)
    usable = (absmax > 0) & (weight_range > 0) & np.isfinite(factors)
    return np.where(usable, np.maximum(factors, MIN_FACTOR), 1.0).astype(np.float32)


def _smoothing_nodes(found: dict, absmax: dict[str, np.ndarray], alpha: float
                     ) -> tuple[dict[int, object], list]:
    """Per rewritten input with calibrated ranges: the Mul (x / f) to run before its first
    MatMul, keyed by that MatMul's position; `found` (position -> node, W, bias) gets the
    weights scaled by f and the nodes reading the smoothed input."""
    from onnx import helper, numpy_helper

    groups: dict[str, list[int]] = {}
    for at, (node, _, _) in found.items():
        if node.name in absmax:
            groups.setdefault(node.input[0], []).append(at)
    before, constants = {}, []
    for k, (x, group) in enumerate(groups.items()):
        first = found[group[0]][0].name
        factors = smoothing_factors(absmax[first], [found[at][1] for at in group], alpha)
        p = f"{first}/smooth{k}"
        constants.append(numpy_helper.from_array(1 / factors, f"{p}/inv_f"))
        before[group[0]] = helper.make_node("Mul", [x, f"{p}/inv_f"], [f"{p}/x"])
        for at in group:  # every MatMul of the group reads the smoothed input
            node, weight, bias = found[at]
            node.input[0] = f"{p}/x"
            found[at] = (node, weight * factors[:, None], bias)
    return before, constants


def per_row_int8(source: Path, target: Path, exclude: Sequence[str] = (),
                 only: Sequence[str] | None = None,
                 input_absmax: dict[str, np.ndarray] | None = None,
                 alpha: float = SMOOTHING_ALPHA) -> list[str]:
    """Rewrite the MatMul/Gemm nodes with a constant weight as per-row int8, except `exclude`
    (or only the nodes in `only`); returns the names rewritten. `input_absmax` (MatMul name
    -> max |x| per input channel, calibrated): smooth those MatMuls' inputs first."""
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    skipped, wanted = set(exclude), None if only is None else set(only)
    found = {}  # graph position -> (node, W, bias): positions, since names may be empty
    for at, node in enumerate(graph.node):
        if node.name not in skipped and (wanted is None or node.name in wanted):
            weight = constant_weight(node, initializers)
            if weight is not None:
                found[at] = (node, *weight)
    before, constants = _smoothing_nodes(found, input_absmax or {}, alpha)
    graph.initializer.extend(constants)
    nodes, rewritten = [], []
    for at, node in enumerate(graph.node):
        if at not in found:
            nodes.append(node)
            continue
        replacement, constants = _replacement(*found[at], len(rewritten))
        nodes.extend([*([before[at]] if at in before else []), *replacement])
        graph.initializer.extend(constants)
        rewritten.append(node.name)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))
    return rewritten
