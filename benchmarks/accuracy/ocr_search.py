"""Finding photos by the text in them: signs, labels and menus in English and Chinese.

Each text (made from seeded word lists: "GOLDEN BAKERY OPEN DAILY", "西湖 牛肉面 欢迎光临")
is rendered once with a CJK font from Debian (fonts-noto-cjk or fonts-wqy-microhei): half on
plain boards of random colours, half on Flickr8k-CN val photos (on a painted sign, or
outlined straight onto the photo). Other val photos, without rendered text, are indexed
beside them as distractors. Everything is indexed with `--ocr` (crossmodal.data.ocr) into a
collection of the chosen model, and each text is searched for as typed (the rendered text;
English also in lower case): R@1 and R@5 per language.

Also shown: how exactly the text was read (share of photos whose read text equals the rendered
one, ignoring spaces and case), the OCR speed (photos/s, with the CPU and load in the result
file), the text-to-text scores of each query against its own photo's read text and the best
other photo's (what OCR_MATCH in crossmodal.collection.ocr_search is chosen between), and how
often a Flickr8k caption query (a description, not a text on a sign) is answered first by a
photo's read text: the cost of the text route to ordinary searches.

`--mode` names the search mode or modes (vector, keyword, hybrid: comma-separated, measured
on one set and one index, a result file each).

    nice -n 15 python benchmarks/accuracy/ocr_search.py --mode vector,keyword,hybrid
    nice -n 15 python benchmarks/accuracy/ocr_search.py --per-language 100 --distractors 200
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from _common import begin_run, write_result
from crossmodal.collection.collection import Collection
from crossmodal.collection.ocr_search import ocr_filter
from crossmodal.data.flickr8k_cn import read_captions, read_split_ids
from crossmodal.data.ocr import TextReader
from crossmodal.models.registry import DEFAULT_MODEL

RESULTS = Path(__file__).resolve().parents[1] / "results"
DATA = Path("/work/shared/data/flickr8k-cn")
FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
         "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
         "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
         "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

EN_FIRST = ("FRESH", "CITY", "OLD TOWN", "NORTH", "GOLDEN", "ROYAL", "GREEN", "SUNNY",
            "BLUE RIVER", "MAPLE", "HARBOUR", "STAR", "LUCKY", "SILVER", "PARK LANE", "RED ROCK",
            "OCEAN", "MOUNTAIN", "CORNER", "HAPPY")
EN_SECOND = ("COFFEE", "BAKERY", "PHARMACY", "MUSEUM", "LIBRARY", "HOTEL", "PARKING",
             "STATION", "MARKET", "PIZZA", "NOODLES", "BOOKS", "FLOWERS", "TICKETS", "TAXI",
             "BANK", "POST OFFICE", "CINEMA", "DENTIST", "BARBER", "LAUNDRY", "GALLERY",
             "BICYCLES", "SUSHI BAR", "TEA HOUSE")
EN_THIRD = ("", "", "OPEN DAILY", "EST. 1987", "2 FOR 5", "EXIT 4", "NO SMOKING", "SALE",
            "CLOSED ON MONDAY", "SINCE 1962")
ZH_FIRST = ("北京", "上海", "人民", "长江", "黄河", "西湖", "东方", "金色", "红星", "幸福",
            "阳光", "新华", "和平", "春天", "明月", "南山", "平安", "友谊", "长城", "光明")
ZH_SECOND = ("咖啡馆", "面包店", "药店", "博物馆", "图书馆", "酒店", "停车场", "火车站",
             "菜市场", "牛肉面", "书店", "花店", "售票处", "银行", "邮局", "电影院", "牙科诊所",
             "理发店", "洗衣店", "美术馆", "超市", "饺子馆", "茶馆", "自行车行", "水果店")
ZH_THIRD = ("", "", "欢迎光临", "营业中", "出口", "二楼", "特价", "24小时营业", "禁止吸烟",
            "周一休息")


def find_font() -> Path | None:
    """A Debian CJK font (it draws Latin letters too); None when none is installed."""
    return next((Path(f) for f in FONTS if Path(f).is_file()), None)


def make_texts(rng: random.Random, n: int, first, second, third, joiner: str) -> list[str]:
    """`n` distinct sign texts from the word lists."""
    texts: set[str] = set()
    while len(texts) < n:
        words = [rng.choice(first), rng.choice(second), rng.choice(third)]
        texts.add(joiner.join(w for w in words if w))
    return sorted(texts)


def render(text: str, background: Image.Image | None, font_path: Path,
           rng: random.Random) -> Image.Image:
    """`text` on a plain board (background None) or on a photo: on a painted sign, or
    outlined straight onto it. Long texts break into two lines."""
    words = text.split(" ")
    lines = [text] if len(words) < 3 else [" ".join(words[:-1]), words[-1]]
    if background is None:
        colour = tuple(rng.randrange(256) for _ in range(3))
        image = Image.new("RGB", (rng.choice((480, 640, 800)), rng.choice((360, 480))), colour)
    else:
        image = background.convert("RGB").copy()
        colour = None
    draw = ImageDraw.Draw(image)
    size = max(18, int(min(image.size) * rng.uniform(0.07, 0.11)))
    font = ImageFont.truetype(str(font_path), size)
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    width = max(b[2] - b[0] for b in boxes)
    height = sum(b[3] - b[1] for b in boxes) + size // 3 * (len(lines) - 1)
    while width > image.width * 0.92 and size > 14:  # shrink a long text to fit
        size = int(size * 0.85)
        font = ImageFont.truetype(str(font_path), size)
        boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
        width = max(b[2] - b[0] for b in boxes)
        height = sum(b[3] - b[1] for b in boxes) + size // 3 * (len(lines) - 1)
    x = rng.randint(8, max(8, image.width - width - 8))
    y = rng.randint(8, max(8, image.height - height - 8))
    on_board = colour is not None or rng.random() < 0.5
    if colour is None and on_board:
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((x - 10, y - 8, x + width + 10, y + height + 12), fill=colour)
    if on_board:
        ink = (0, 0, 0) if sum(colour) > 384 else (255, 255, 255)
        stroke = 0
    else:
        ink, stroke = (255, 255, 255), max(2, size // 14)
    for line, box in zip(lines, boxes, strict=True):
        draw.text((x, y - box[1]), line, font=font, fill=ink, stroke_width=stroke,
                  stroke_fill=(0, 0, 0))
        y += box[3] - box[1] + size // 3
    return image


class TimedReader:
    """A TextReader that counts the seconds spent reading."""

    def __init__(self, reader: TextReader):
        self.reader, self.seconds, self.photos = reader, 0.0, 0

    def captions(self, image) -> list[str]:
        started = time.perf_counter()
        try:
            return self.reader.captions(image)
        finally:
            self.seconds += time.perf_counter() - started
            self.photos += 1


def search(collection: Collection, query: str, k: int, mode: str) -> list:
    """The hits of `query` in `mode` (vector: what search_text does without a mode)."""
    if mode == "vector":
        return collection.search_text(query, k)
    try:
        return collection.search_text(query, k, mode=mode)
    except TypeError:
        raise SystemExit(f"--mode {mode}: this collection's search_text takes no mode") from None


def build_set(folder: Path, args, font: Path) -> tuple[list[dict], list[str]]:
    """Render the signs and copy the distractors into `folder`; the queries (text, language,
    item id) and the distractors' item ids."""
    rng = random.Random(args.seed)
    val = read_split_ids(DATA, "val")
    rng.shuffle(val)
    backgrounds = iter(val[: args.per_language * 2])
    distractors = val[args.per_language * 2: args.per_language * 2 + args.distractors]
    queries = []
    for language, words, joiner in (("en", (EN_FIRST, EN_SECOND, EN_THIRD), " "),
                                    ("zh", (ZH_FIRST, ZH_SECOND, ZH_THIRD), " ")):
        for n, text in enumerate(make_texts(rng, args.per_language, *words, joiner)):
            photo = next(backgrounds)
            background = None if n % 2 == 0 else Image.open(DATA / "images" / f"{photo}.jpg")
            name = f"{language}-{n:03d}.jpg"
            render(text, background, font, rng).save(folder / name, quality=90)
            queries.append({"text": text, "language": language, "id": name,
                            "background": "plain" if background is None else "photo"})
    for photo in distractors:
        shutil.copy(DATA / "images" / f"{photo}.jpg", folder / f"{photo}.jpg")
    return queries, [f"{photo}.jpg" for photo in distractors]


def normal(text: str) -> str:
    return "".join(text.split()).lower()


def measure(collection: Collection, queries: list[dict], mode: str,
            misses: list[dict] | None = None) -> dict:
    """R@1 / R@5 per language (and per background), English also typed in lower case; each
    query whose photo is not first goes to `misses` (with what came first and what was read)."""
    rows: dict[str, list[int]] = {}
    for query in queries:
        variants = [("", query["text"])]
        if query["language"] == "en":
            variants.append((" lower", query["text"].lower()))
        for suffix, text in variants:
            hits = search(collection, text, 5, mode)
            ids = [hit.id for hit in hits]
            rank = ids.index(query["id"]) + 1 if query["id"] in ids else 99
            if rank > 1 and misses is not None:
                misses.append({"query": text, "photo": query["id"], "rank": rank,
                               "first": ids[0] if ids else None,
                               "first_reads": hits[0].text if hits else None,
                               "photo_captions": collection.item(query["id"])["captions"]})
            for key in (query["language"] + suffix,
                        f"{query['language']}{suffix} on {query['background']}"):
                rows.setdefault(key, []).append(rank)
    return {key: {"queries": len(ranks), "R@1": round(float(np.mean(np.array(ranks) <= 1)), 4),
                  "R@5": round(float(np.mean(np.array(ranks) <= 5)), 4)}
            for key, ranks in sorted(rows.items())}


def read_accuracy(collection: Collection, queries: list[dict]) -> dict:
    """Share of photos whose read text equals the rendered one (spaces and case aside)."""
    exact: dict[str, list[bool]] = {}
    for query in queries:
        item = collection.item(query["id"])
        read = [c for c, s in zip(item["captions"], item.get("caption_sources") or [],
                                  strict=False) if s == "ocr"]
        exact.setdefault(query["language"], []).append(normal(" ".join(read)) ==
                                                       normal(query["text"]))
    return {lang: round(float(np.mean(v)), 4) for lang, v in exact.items()}


def match_scores(collection: Collection, queries: list[dict]) -> dict:
    """Each query's text-to-text score against its own photo's read text, and against the
    best other photo's: the margin OCR_MATCH sits in."""
    own, other = [], []
    for query in queries:
        vector = collection.text_query(query["text"])
        hits = collection.search_vectors(vector, 5, "texts", where=ocr_filter(None))[0]
        own.append(max([h.score for h in hits if h.item_id == query["id"]], default=0.0))
        other.append(max([h.score for h in hits if h.item_id != query["id"]], default=0.0))
    q = [1, 5, 50]
    return {"own_text_percentiles": dict(zip(map(str, q), np.percentile(own, q).round(3).tolist(),
                                             strict=True)),
            "other_text_max": round(float(np.max(other)), 3),
            "other_text_p99": round(float(np.percentile(other, 99)), 3)}


def caption_takeover(collection: Collection, distractors: list[str], n: int) -> dict:
    """Share of Flickr8k caption queries (of the distractor photos) answered first by a
    photo's read text rather than by the image ranking."""
    out = {}
    for language in ("en", "zh"):
        captions = read_captions(DATA, language)
        texts = [captions[d.removesuffix(".jpg")][0] for d in distractors[:n]
                 if captions.get(d.removesuffix(".jpg"))]
        first_by_text = [bool(hits and hits[0].text) for hits in
                         (collection.search_text(t, 1) for t in texts)]
        out[language] = {"queries": len(texts),
                         "answered_by_read_text": round(float(np.mean(first_by_text)), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--per-language", type=int, default=60)
    parser.add_argument("--distractors", type=int, default=120)
    parser.add_argument("--mode", default="vector",
                        help="vector, keyword or hybrid, or several: vector,keyword,hybrid "
                             "(one set, one index; a result file per mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    font = find_font()
    if font is None:
        raise SystemExit("no CJK font: apt-get install -y fonts-noto-cjk")
    envelope = begin_run()
    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        queries, distractors = build_set(photos, args, font)
        reader = TimedReader(TextReader())
        collection = Collection.create(Path(tmp) / "index", model=args.model)
        started = time.perf_counter()
        report = collection.add_paths([photos], ocr=reader)
        index_seconds = time.perf_counter() - started
        common = {
            "model": args.model, "font": font.name, "seed": args.seed,
            "photos": len(collection), "with_text_read": report.ocr_found,
            "read_exactly": read_accuracy(collection, queries),
            "scores": match_scores(collection, queries),
            "caption_queries": caption_takeover(collection, distractors, 100),
            "ocr_photos_per_s": round(reader.photos / reader.seconds, 3),
            "index_photos_per_s": round(len(collection) / index_seconds, 3),
        }
        results = []
        for mode in args.mode.split(","):
            misses: list[dict] = []
            recall = measure(collection, queries, mode, misses)
            results.append({**common, "mode": mode, "recall": recall, "misses": misses})
    for result in results:
        print_table(result)
        out = args.out or RESULTS / (f"ocr_search-{args.model.replace(':', '_')}-"
                                     f"{result['mode']}.json")
        print(f"wrote {write_result(out, result, envelope)}")


def print_table(result: dict) -> None:
    print(f"{result['model']}, {result['mode']} search, {result['photos']} photos "
          f"({result['with_text_read']} with text read)")
    print(f"{'queries':24s} {'n':>4s} {'R@1':>6s} {'R@5':>6s}")
    for key, row in result["recall"].items():
        print(f"{key:24s} {row['queries']:4d} {row['R@1']:6.3f} {row['R@5']:6.3f}")
    for miss in result["misses"]:
        print(f"missed: {miss}")
    print(f"read exactly: {result['read_exactly']}")
    print(f"scores: {result['scores']}")
    print(f"caption queries answered by read text: {result['caption_queries']}")
    print(f"OCR {result['ocr_photos_per_s']} photos/s; indexing with OCR "
          f"{result['index_photos_per_s']} photos/s")


if __name__ == "__main__":
    main()
