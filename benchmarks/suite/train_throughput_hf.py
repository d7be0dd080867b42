"""Training throughput (image-caption pairs/s) of an hf: CLIP on this machine, per policy.

As train_throughput.py, for `crossmodal train` on hf: models: the trainable blocks run from
their cached inputs, plus the model's projections, InfoNCE, backward and AdamW. Without a
cached checkpoint (this machine is offline), `--random-clip` builds openai/clip-vit-base-patch32's
architecture with random weights: the same arithmetic per step as the pretrained model.

    python benchmarks/suite/train_throughput_hf.py --random-clip --data ../shared/data/flickr8k-cn
    python benchmarks/suite/train_throughput_hf.py --model hf:openai/clip-vit-base-patch32
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import torch
from train_throughput import RESULTS, measure_policies  # noqa: E402

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn  # noqa: E402
from crossmodal.train.hf_parts import HFTrainable  # noqa: E402

POLICIES = {  # name: (image blocks, text blocks, batch size)
    "heads only": (0, 0, 256),
    "top blocks (image 3, text 2)": (3, 2, 128),
    "full fine-tuning": ("all", "all", 32),
}


def random_clip_b32(folder: Path, captions: list[str]) -> Path:
    """ViT-B/32 CLIP shapes, random weights; a word-level tokenizer over the captions."""
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = sorted({w for text in captions for w in re.findall(r"\w+|[^\w\s]", text)})
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                               bos_token="<s>", eos_token="</s>",
                               model_max_length=77).save_pretrained(folder)
    config = tf.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=512, intermediate_size=2048,
                         num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, image_size=224, patch_size=32),
        projection_dim=512)
    torch.manual_seed(0)
    tf.CLIPModel(config).save_pretrained(folder)
    return folder


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--model", help="hf:<hub id or folder> (clip or chinese_clip)")
    parser.add_argument("--random-clip", action="store_true",
                        help="random ViT-B/32 CLIP instead of --model")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not args.model and not args.random_clip:
        parser.error("give --model hf:... or --random-clip")
    captions = load_flickr8k_cn(args.data, "train", "en").texts
    with tempfile.TemporaryDirectory() as temp:
        source = (str(random_clip_b32(Path(temp), captions)) if args.random_clip
                  else args.model.removeprefix("hf:"))
        results = measure_policies(HFTrainable(source), captions, POLICIES, args.steps)
    label = "random-clip-b32" if args.random_clip else re.sub(r"\W+", "-", args.model)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"train_throughput_hf_{label}.json"
    write_result(out, {"model": label, "threads": torch.get_num_threads(),
                               "results": results}, envelope)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
