"""Training throughput (image-caption pairs/s) of lite-en on this machine, per policy.

One optimiser step = the trainable blocks from their cached inputs (as `crossmodal train`
runs them: activations at the first trained block, real Flickr8k captions) + heads +
InfoNCE + backward + AdamW. Caching the frozen part is paid once per run and not counted.

    python benchmarks/suite/train_throughput.py --data ../shared/data/flickr8k-cn
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
import torch

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.losses.infonce import InfoNCELoss
from crossmodal.models.towers import TowersEncoder, find_tower_config
from crossmodal.train.activations import TokenStates
from crossmodal.train.tower_parts import FrozenSide, ImageBlocksSide, TextBlocksSide

RESULTS = Path(__file__).resolve().parents[1] / "results"
POLICIES = {  # name: (image blocks, text blocks, batch size)
    "heads only": (0, 0, 256),
    "top blocks (image 3, text 2)": (3, 2, 256),
    "full fine-tuning": ("all", "all", 64),
}


def side_inputs(encoder, captions: list[str], n: int, image_blocks, text_blocks):
    image_total, text_total = len(encoder.image_backbone.blocks()), len(
        encoder.text_backbone.blocks())
    image_count = image_total if image_blocks == "all" else image_blocks
    text_count = text_total if text_blocks == "all" else text_blocks
    rng = np.random.default_rng(0)
    if image_count:
        cut = image_total - image_count
        with torch.inference_mode():  # activations of real-looking pixels at the cut
            pixels = torch.randn(n, 3, 224, 224)
            acts = torch.cat([encoder.image_backbone.run_blocks(pixels[i:i + 16], 0, cut)
                              for i in range(0, n, 16)]).numpy()
        image = ImageBlocksSide(encoder.image_backbone, [acts], cut)  # one view, as in training
    else:
        image = FrozenSide(rng.standard_normal((n, encoder.image_backbone.out_dim), np.float32))
    if text_count:
        cut = text_total - text_count
        backbone = encoder.text_backbone
        per_text = []
        with torch.inference_mode():
            for caption in captions[:n]:
                tokens = backbone.tokenize([caption])
                ids, mask = tokens["input_ids"], tokens["attention_mask"]
                state = ids if cut == 0 else backbone.run_blocks(ids, mask, 0, cut)
                per_text.append(state[0].numpy())
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in per_text])])
        text = TextBlocksSide(backbone, TokenStates(np.concatenate(per_text), offsets), cut)
    else:
        text = FrozenSide(rng.standard_normal((n, encoder.text_backbone.out_dim), np.float32))
    blocks = []
    if image_count:
        blocks += encoder.image_backbone.blocks()[-image_count:]
    if text_count:
        blocks += encoder.text_backbone.blocks()[-text_count:]
    return image, text, blocks


def pairs_per_second(encoder, captions, policy, steps: int) -> float:
    image_blocks, text_blocks, batch = policy
    image, text, blocks = side_inputs(encoder, captions, batch * 2, image_blocks, text_blocks)
    loss_fn = InfoNCELoss()
    params = [*encoder.heads.parameters(), *loss_fn.parameters(),
              *(p for b in blocks for p in b.parameters())]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    rows = np.arange(batch * 2)
    timings = []
    for step in range(steps + 1):  # the first step warms up and is not counted
        batch_rows = rows[(step % 2) * batch : (step % 2 + 1) * batch]
        start = time.perf_counter()
        loss = loss_fn(encoder.heads.image(image(batch_rows)), encoder.heads.text(text(batch_rows)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return batch * steps / sum(timings[1:])


def measure_policies(encoder, captions: list[str], policies: dict, steps: int) -> list[dict]:
    """pairs/s of each policy, printed as a table as they come."""
    encoder.image_backbone.requires_grad_(False)
    encoder.text_backbone.requires_grad_(False)
    results = []
    print(f"{'policy':<30} {'batch':>6} {'pairs/s':>9}")
    for name, policy in policies.items():
        rate = pairs_per_second(encoder, captions, policy, steps)
        results.append({"policy": name, "image_blocks": policy[0], "text_blocks": policy[1],
                        "batch_size": policy[2], "pairs_per_s": round(rate, 1)})
        print(f"{name:<30} {policy[2]:>6} {rate:>9.1f}")
    return results


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    captions = load_flickr8k_cn(args.data, "train", "en").texts
    results = measure_policies(TowersEncoder(find_tower_config("lite-en")), captions,
                               POLICIES, args.steps)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "train_throughput.json"
    write_result(out, {"threads": torch.get_num_threads(), "results": results}, envelope)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
