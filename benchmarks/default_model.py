"""The default model's projection: the fused vector of fusion:bilingual's members down to
512 dims, fitted on Flickr8k-CN **train** only (never val), by a rule fixed before measuring.

Rule: uncentred PCA (the top eigenvectors of the second-moment matrix, which keep inner
products, the retrieval score, as well as any rank-k map can on average) of the fused train
vectors: 1,000 train photos drawn with seed 0, their Chinese (human-written) and English
captions; images and captions weigh half each. 512 dims: the issue's cap, not tuned.

    python benchmarks/default_model.py fit-projection --data ../shared/data/flickr8k-cn

writes src/crossmodal/models/fusions/bilingual.projection.safetensors (the fusion file
names it) and benchmarks/results/default_model_projection.json (command, energy kept).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from crossmodal.config_files import read_config_file
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.models.fusion import _fusion_dir
from crossmodal.models.registry import load_encoder
from embed_throughput import provenance

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "bilingual"


def members_only_fusion(source: Path, folder: Path) -> str:
    """A fusion file's members (their weights, TTA) without its projection, as a file."""
    config = read_config_file(str(source), "fusion config")
    lines = []
    for member in config["members"]:
        fields = ", ".join(f"{k} = {json.dumps(v)}" for k, v in member.items())
        lines.append(f"{{{fields}}}")
    path = folder / "members.toml"
    path.write_text(f"members = [{', '.join(lines)}]\n", encoding="utf-8")
    return f"fusion:{path}"


def fit_projection(images: np.ndarray, texts: np.ndarray, dim: int) -> tuple[np.ndarray, float]:
    """(in dim, `dim`) orthonormal columns: the top eigenvectors of the images' and the
    texts' second-moment matrices averaged; and the share of the energy they keep."""
    moment = 0.5 * (images.T @ images) / len(images) + 0.5 * (texts.T @ texts) / len(texts)
    values, vectors = np.linalg.eigh(moment.astype(np.float64))
    order = np.argsort(values)[::-1][:dim]
    return vectors[:, order].astype(np.float32), float(values[order].sum() / values.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fit-projection"])
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--fusion", type=Path, default=_fusion_dir() / f"{NAME}.toml",
                        help="The fusion file whose members are projected (default: shipped)")
    args = parser.parse_args()

    from safetensors.numpy import save_file

    data = load_flickr8k_cn(args.data, "train", "zh+en").sample(args.images, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        fused = load_encoder(members_only_fusion(args.fusion, Path(folder)))
        stored = embed_dataset(fused, data, progress=True)
    projection, energy = fit_projection(stored.images, stored.texts, args.dim)
    out = _fusion_dir() / f"{NAME}.projection.safetensors"
    save_file({"projection": projection}, str(out),
              metadata={"fitted_on": data.name, "rule": "uncentred PCA, images and texts "
                        "half each", "command": provenance()["command"]})
    result = {"file": out.name, "in_dim": int(projection.shape[0]), "dim": args.dim,
              "train_images": len(data.images), "train_texts": len(data.texts),
              "energy_kept": round(energy, 4), **provenance()}
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "default_model_projection.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
