"""A cold `crossmodal search` loads what a text query needs: no torch, no transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from crossmodal.engine import Collection
from crossmodal.models.towers import find_tower_config
from crossmodal.models.towers.onnx_towers import TowersOnnxEncoder

PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("LOADED", [m for m in ("torch", "transformers")
                                         if m in sys.modules], file=sys.stderr))
sys.argv = ["crossmodal", "search", sys.argv[1], "a dog", "--k", "2", "--json"]
runpy.run_module("crossmodal", run_name="__main__")
"""


def test_a_cold_text_search_loads_neither_torch_nor_transformers(tmp_path):
    encoder = TowersOnnxEncoder(find_tower_config("lite-en"), text_runtime="onnx")
    query = encoder.encode_texts(["a dog"])  # also makes the export (first use), untimed
    rng = np.random.default_rng(0)
    others = rng.standard_normal((50, encoder.dim)).astype(np.float32)
    vectors = np.concatenate([others, query])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = tmp_path / "idx"
    collection = Collection.create(index, model="towers:lite-en", encoder=encoder)
    collection.add_vectors([{"id": f"item{i}", "path": f"item{i}.jpg"} for i in range(51)],
                           vectors)
    done = subprocess.run([sys.executable, "-c", PROBE, str(index)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert hits[0]["id"] == "item50" and hits[0]["score"] > 0.9999  # the same query vector
    assert "LOADED []" in done.stderr
