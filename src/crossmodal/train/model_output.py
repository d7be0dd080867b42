"""What `crossmodal finetune` leaves in OUT: a model folder every command takes as
`--model OUT` (crossmodal-model.json naming a tower config and its heads, or a transformers
folder), and its model card (MODEL_CARD.md for people, model-card.json for programs)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from crossmodal.models.model_folder import MODEL_FILE
from crossmodal.storage import atomic_save_json, atomic_write

RETRIEVAL_COLUMNS = [("i2t R@1", "image_to_text", "R@1"), ("i2t R@5", "image_to_text", "R@5"),
                     ("i2t R@10", "image_to_text", "R@10"), ("t2i R@1", "text_to_image", "R@1"),
                     ("t2i R@5", "text_to_image", "R@5"), ("t2i R@10", "text_to_image", "R@10")]


def write_towers_model(out: Path, tower, best_heads: Path, base_id: str) -> str:
    """OUT/heads.safetensors and OUT/tower.json (the base config with these heads); the
    model file is written last (see `finish`)."""
    heads = out / "heads.safetensors"
    atomic_write(heads, lambda handle: handle.write(best_heads.read_bytes()))
    backbones = tower.backbone_weights_path
    config = replace(tower, name=f"{tower.name}-ft-{out.name}"[:80], weights=heads.name,
                     backbone_weights=str(backbones) if backbones else None,
                     description=f"{tower.description} Fine-tuned from {base_id} by crossmodal "
                                 f"finetune (see MODEL_CARD.md).")
    atomic_save_json(out / "tower.json", {**config.to_dict(), "languages": tower.languages})
    return "towers:tower.json"


def write_hf_model(out: Path, trainable) -> str:
    """OUT/hf: the transformers folder with the best heads (hf_parts.save_best)."""
    folder = trainable.save_best(out / "train")
    shutil.rmtree(out / "hf", ignore_errors=True)
    os.replace(folder, out / "hf")
    return "hf:hf"


def finish(out: Path, inner_id: str, base_id: str) -> None:
    """The model file, last: its presence says the folder is a complete model."""
    atomic_save_json(out / MODEL_FILE, {"model": inner_id, "base_model": base_id,
                                        "made_by": "crossmodal finetune"})


def retrieval_row(name: str, report: dict) -> list[str]:
    cells = [f"{report[d][k]:.1f}" for _, d, k in RETRIEVAL_COLUMNS]
    return [name, *cells, f"{report['rsum']:.1f}", f"{report['rsum'] / 6:.1f}"]


def retrieval_table(before: dict, after: dict, markdown: bool = False) -> str:
    """Before/after in the CE-CLIP layout: R@1/5/10 both ways, Rsum, Mean Recall."""
    header = ["model", *(c for c, _, _ in RETRIEVAL_COLUMNS), "Rsum", "Mean Recall"]
    rows = [header, retrieval_row("before", before), retrieval_row("after", after)]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |",
                 "| --- |" + " ---: |" * (len(header) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


def write_card(out: Path, card: dict) -> None:
    atomic_save_json(out / "model-card.json", card)
    split = card["held_out"]
    text = f"""# {out.name}

Fine-tuned from `{card['base_model']}` by `crossmodal finetune` on `{card['data']}`.
Use it as `--model {out}` with `index`, `search`, `eval`, `serve` and `export-onnx`.

## Data

- training: {card['counts']['train_images']} images, {card['counts']['train_texts']} captions
- held out: {card['counts']['val_images']} images, {card['counts']['val_texts']} captions
  ({split['how']})
- skipped: {card['counts']['skipped']} items (listed in model-card.json)

## Recipe

{card['recipe']['summary']}

Epochs: {card['recipe']['epochs']}, batch size {card['recipe']['batch_size']}, learning rate
{card['recipe']['lr']}, seed {card['seed']}; kept: epoch {card['best_epoch']} (epoch 0 is the
base model unchanged), chosen by Rsum on the held-out part.

## Held-out retrieval, before and after

{retrieval_table(card['before'], card['after'], markdown=True)}
{_fusion_sections(card)}
The epoch was chosen on this same held-out part, so "after" leans slightly optimistic;
`crossmodal eval --model {out} --data SPEC` on a separate test set gives an unbiased figure.

## Time

{card['wall_s']:.0f} s wall ({', '.join(f'{k} {v:.0f} s' for k, v in card['phases_s'].items())}), on
{card['cpu']}, load average
{card['load_average']['before']} before and {card['load_average']['after']} after;
device: {card['device']}.
"""
    atomic_write(out / "MODEL_CARD.md", lambda handle: handle.write(text), mode="w")


LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


def language_tables(card: dict, markdown: bool = False) -> list[tuple[str, str]]:
    """(title, before/after table) per caption language of a fused model's held-out part."""
    return [(f"{LANGUAGE_NAMES.get(lang, lang)} captions ({lang})",
             retrieval_table(pair["before"], pair["after"], markdown))
            for lang, pair in card.get("by_language", {}).items()]


def member_lines(card: dict) -> list[str]:
    """One line per member of a fine-tuned fusion: what it learned, its own held-out Rsum."""
    lines = []
    for member in card.get("members", []):
        line = f"{member['model']}: {member['status']}"
        if "best_epoch" in member:
            line += (f", its own held-out Rsum {member['before_rsum']:.1f} -> "
                     f"{member['after_rsum']:.1f} (epoch {member['best_epoch']})")
        lines.append(line)
    return lines


def _fusion_sections(card: dict) -> str:
    if "members" not in card:
        return ""
    parts = [f"\n### {title}\n\n{table}\n" for title, table in language_tables(card, True)]
    parts.append("\n## Members\n\n" + "\n".join(f"- {line}" for line in member_lines(card))
                 + "\n")
    return "".join(parts)
