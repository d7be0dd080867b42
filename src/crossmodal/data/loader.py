"""Decode images on background threads (PIL releases the GIL) while the model runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from crossmodal.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image


def _load_one(path: Path, max_pixels: int, target_size: int | None) -> Image.Image | str:
    try:
        return load_image(path, max_pixels=max_pixels, target_size=target_size)
    except ImageLoadError as exc:
        return str(exc)


def iter_image_batches(
    paths: Sequence[Path],
    batch_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
    workers: int = 2,
) -> Iterator[tuple[list[int], list[Image.Image], list[tuple[int, str]]]]:
    """Yield (positions, images, failures) per batch; the next batch decodes meanwhile."""
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int):
            chunk = paths[start : start + batch_size]
            return start, [pool.submit(_load_one, p, max_pixels, target_size) for p in chunk]

        pending = submit(0) if paths else None
        for next_start in range(batch_size, len(paths) + batch_size, batch_size):
            start, futures = pending
            pending = submit(next_start) if next_start < len(paths) else None
            positions, images, failures = [], [], []
            for offset, future in enumerate(futures):
                result = future.result()
                if isinstance(result, str):
                    failures.append((start + offset, result))
                else:
                    positions.append(start + offset)
                    images.append(result)
            yield positions, images, failures
            if pending is None:
                break


def encode_image_sources(
    sources: Sequence[Path | bytes],
    encode: Callable[[list[Image.Image]], np.ndarray],
    batch_size: int = 32,
    target_size: int | None = None,
    dim: int | None = None,
    desc: str = "images",
    progress: bool = True,
) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
    """One row per source (zero where unreadable) and the (row, reason) failures.

    Without `dim` the width comes from the first readable batch; the rows are None when no
    image could be read.
    """
    rows = None if dim is None else np.zeros((len(sources), dim), np.float32)
    failed: list[tuple[int, str]] = []
    bar = tqdm(total=len(sources), desc=desc, unit="img", disable=not progress)
    for positions, images, failures in iter_image_batches(sources, batch_size,
                                                          target_size=target_size):
        failed.extend(failures)
        if images:
            vectors = np.asarray(encode(images), dtype=np.float32)
            if rows is None:
                rows = np.zeros((len(sources), vectors.shape[1]), np.float32)
            rows[positions] = vectors
        bar.update(len(positions) + len(failures))
    bar.close()
    return rows, failed


def encode_text_batches(texts: Sequence[str], encode: Callable[[list[str]], np.ndarray],
                        batch_size: int = 256, desc: str = "texts",
                        progress: bool = True) -> np.ndarray:
    """`encode` over batches of texts, with a progress bar; float32 rows in input order."""
    parts = [np.asarray(encode(list(texts[i : i + batch_size])), dtype=np.float32)
             for i in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch",
                           disable=not progress)]
    return np.concatenate(parts)
