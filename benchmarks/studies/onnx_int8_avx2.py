"""int8 ONNX on an AVX2-only CPU, emulated: the same export run here and under qemu-x86_64.

ONNX Runtime picks its integer kernels from CPUID, so `qemu-x86_64 -cpu Haswell` (AVX2, no
AVX-512/VNNI) runs the kernels an AVX2-only machine runs. The script exports --model with int8
text and static int8 image graphs, embeds the bundled sample photos and captions natively and
under qemu, and reports each side's cosine to PyTorch (fp32) and the largest difference between
the two CPUs. A probe first shows that the emulated CPU takes the saturating uint8 x int8 path.
Slow (minutes: Python, torch and ORT run emulated); needs `apt-get install qemu-user`.

    python benchmarks/studies/onnx_int8_avx2.py --model towers:lite-en
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, row_cosines, write_result

RESULTS = Path(__file__).resolve().parents[1] / "results"
SAMPLES = Path(__file__).resolve().parents[2] / "src" / "crossmodal" / "samples"


def samples() -> tuple[list, list[str]]:
    from PIL import Image

    images, captions = [], []
    for path in sorted(SAMPLES.glob("*.jpg")):
        images.append(Image.open(path).convert("RGB"))
        captions.append(path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()[0])
    return images, captions


def saturation_probe() -> dict:
    """uint8 255 x int8 127 summed over 64: exact on VNNI, clipped by vpmaddubsw on AVX2."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 64]),
              helper.make_tensor_value_info("b", TensorProto.INT8, [64, 16])]
    output = helper.make_tensor_value_info("y", TensorProto.INT32, [1, 16])
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
                              inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": np.full((1, 64), 255, np.uint8), "b": np.full((64, 16), 127, np.int8)}
    got = int(session.run(None, feed)[0][0, 0])
    return {"u8s8_sum": got, "exact": 255 * 127 * 64, "saturates": got != 255 * 127 * 64}


def embed(folder: Path, out: Path) -> None:
    """Run the export on this (maybe emulated) CPU; save its embeddings and the probe."""
    from crossmodal.models.onnx.runtime import OnnxEncoder

    images, captions = samples()
    encoder = OnnxEncoder(folder)
    np.savez(out, images=encoder.encode_images(images), texts=encoder.encode_texts(captions))
    out.with_suffix(".json").write_text(json.dumps(saturation_probe()))


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--cpu", default="Haswell", help="qemu CPU model without AVX-512/VNNI")
    parser.add_argument("--embed", nargs=2, type=Path, help=argparse.SUPPRESS)  # the child run
    args = parser.parse_args()
    if args.embed:
        embed(*args.embed)
        return
    if shutil.which("qemu-x86_64") is None:
        sys.exit("error: qemu-x86_64 not found: apt-get install qemu-user")
    from crossmodal.models.onnx.export import export_encoder
    from crossmodal.models.registry import load_encoder
    from crossmodal.models.speed import cpu_description

    os.environ["CROSSMODAL_BF16"] = "0"  # the PyTorch reference in fp32, as on an AVX2 CPU
    images, captions = samples()
    torch_encoder = load_encoder(args.model)
    reference = {"images": torch_encoder.encode_images(images),
                 "texts": torch_encoder.encode_texts(captions)}
    work = Path(tempfile.mkdtemp(prefix="crossmodal-avx2-"))
    export_encoder(torch_encoder, work / "int8", int8=True, image_int8="static",
                   calibration=images)
    runs = {}
    emulator = ["qemu-x86_64", "-cpu", args.cpu]
    for name, prefix in ((f"native: {cpu_description()}", []),
                         (f"qemu -cpu {args.cpu} (AVX2, no AVX-512/VNNI)", emulator)):
        out = work / f"{len(runs)}.npz"
        subprocess.run([*prefix, sys.executable, __file__, "--embed", str(work / "int8"), str(out)],
                       check=True, stderr=subprocess.DEVNULL)
        runs[name] = (np.load(out), json.loads(out.with_suffix(".json").read_text()))
    rows = []
    for name, (embedded, probe) in runs.items():
        rows.append({"cpu": name, "probe": probe,
                     "image_cosine_to_torch": row_cosines(embedded["images"], reference["images"]),
                     "text_cosine_to_torch": row_cosines(embedded["texts"], reference["texts"])})
        print(f"{name}\n  u8s8 saturates: {probe['saturates']!s:<5} image cos "
              f"{rows[-1]['image_cosine_to_torch']}  text cos {rows[-1]['text_cosine_to_torch']}")
    (native, _), (emulated, _) = runs.values()
    differs = max(float(np.abs(native[k] - emulated[k]).max()) for k in ("images", "texts"))
    print(f"largest difference between the two CPUs: {differs:.3g}")
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"onnx_int8_avx2_{args.model.split(':')[-1]}.json"
    write_result(target, {"model": args.model, "rows": rows,
                                  "max_abs_difference_between_cpus": differs}, envelope)
    print(f"wrote {target}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
