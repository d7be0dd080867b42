"""Flickr8k val retrieval of a model through its real inference path (files -> vectors -> ranks).

R@1/5/10 in both directions and Rsum; 1,000 images and their 5,000 captions of one language;
ties counted pessimistically.

    python benchmarks/towers_val.py --model towers:lite-en --language en
    python benchmarks/towers_val.py --model towers:lite-zh --language zh
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.loader import iter_image_batches
from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()

    data = load_flickr8k_cn(args.data, args.split, args.language)
    encoder = load_encoder(args.model)
    images = np.zeros((len(data.images), encoder.dim), np.float32)
    for positions, batch, failures in tqdm(
        iter_image_batches(data.images, 32, target_size=encoder.preprocessing.size),
        total=-(-len(data.images) // 32), desc="images",
    ):
        assert not failures, failures
        images[positions] = encoder.encode_images(batch)
    texts = np.concatenate([encoder.encode_texts(data.texts[i : i + 256])
                            for i in tqdm(range(0, len(data.texts), 256), desc="captions")])
    report = evaluate_pairs(images, texts, data.text_image)
    i2t, t2i = report["image_to_text"], report["text_to_image"]
    header = f"{'model':<16} {'lang':<4} | i2t R@1  R@5  R@10 | t2i R@1  R@5  R@10 |  Rsum"
    row = (f"{args.model:<16} {args.language:<4} | {i2t['R@1']:7.1f} {i2t['R@5']:4.1f} "
           f"{i2t['R@10']:5.1f} | {t2i['R@1']:7.1f} {t2i['R@5']:4.1f} {t2i['R@10']:5.1f} | "
           f"{report['rsum']:5.1f}")
    print(header)
    print(row)
    RESULTS.mkdir(exist_ok=True)
    name = f"towers_val_{args.model.replace(':', '_')}_{args.language}.json"
    report.update(model=args.model, language=args.language, split=args.split,
                  images=len(data.image_ids), captions=len(data.texts))
    (RESULTS / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
