"""`onnx:` encoders: towers/hf CLIP exported to ONNX and run by ONNX Runtime (optionally int8).

    crossmodal export-onnx --model towers:lite-en --out exported/lite-en [--int8]
    crossmodal index ... --model onnx:exported/lite-en
"""

from crossmodal.models.onnx.manifest import MANIFEST_NAME, OnnxManifest, read_manifest

__all__ = ["MANIFEST_NAME", "OnnxManifest", "read_manifest"]
