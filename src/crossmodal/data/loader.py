"""Decode images on background threads (PIL releases the GIL) while the model runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

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
