"""Input ranges of a graph's weight MatMuls, measured on real inputs: what smoothing
(per_row_int8.py) needs, calibrated once on training data and shipped beside a model."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def matmul_input_absmax(graph: Path, feeds: Iterable[dict[str, np.ndarray]]
                        ) -> dict[str, np.ndarray]:
    """max |x| per input channel (last axis) of each MatMul/Gemm with a constant weight, by
    node name, over the rows of every feed (give unpadded feeds: padding rows count too)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from crossmodal.models.onnx.per_row_int8 import constant_weight

    model = onnx.load(str(graph))
    initializers = {init.name: init for init in model.graph.initializer}
    inputs = {node.name: node.input[0] for node in model.graph.node
              if node.name and constant_weight(node, initializers) is not None}
    wanted = sorted(set(inputs.values()))
    outputs = {out.name for out in model.graph.output}
    for name in wanted:
        if name not in outputs:
            model.graph.output.append(
                helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "probe.onnx"
        onnx.save(model, str(probe))
        session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
        ranges: dict[str, np.ndarray] = {}
        for feed in feeds:
            for name, value in zip(wanted, session.run(wanted, feed), strict=True):
                found = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
                ranges[name] = np.maximum(ranges[name], found) if name in ranges else found
    return {node: ranges[x].astype(np.float32) for node, x in inputs.items() if x in ranges}
