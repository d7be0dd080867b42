"""A perceptual hash of a photo (pHash), upright and turned by 90, 180 and 270 degrees.

The photo is made grey and 32 x 32, its 2-D DCT taken, and the 8 x 8 lowest frequencies
compared with their median: 64 bits, which stay within a few bits of each other when the
photo is resized, re-encoded or made brighter, and differ in about half their bits between
unrelated photos. Image vectors from a model trained on captions are the other way round:
they keep a lightly cropped or straightened copy close, but a half-size or turned copy of
a photo often scores below unrelated photos of the same scene. crossmodal.collection.
duplicates uses both. Turning the photo is done on the 32 x 32 grey square, so the four
hashes cost about one decode.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

SIDE = 32
LOW = 8
ROTATIONS = 4  # 0, 90, 180, 270 degrees
# A photo this flat (the grey square's standard deviation, of 255) has no pattern to hash:
# its bits would be rounding noise, alike for every blank frame, whatever its colour.
MIN_CONTRAST = 2.0


@cache
def _dct_matrix(n: int = SIDE) -> np.ndarray:
    """The orthonormal DCT-II matrix: C @ x is the DCT of column x."""
    k = np.arange(n)[:, None]
    matrix = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix.astype(np.float64)


def grey_square(image: Image.Image) -> np.ndarray:
    """The photo as a SIDE x SIDE grey float array."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    small = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    return np.asarray(small, np.float64)


def _hash_bits(grey: np.ndarray) -> int:
    dct = _dct_matrix() @ grey @ _dct_matrix().T
    low = dct[:LOW, :LOW].ravel()
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def image_hashes(image: Image.Image) -> list[str]:
    """The photo's 64-bit pHash upright, then turned by 90, 180 and 270 degrees, as 16
    hex digits each; none for a flat photo (one colour)."""
    grey = grey_square(image)
    if grey.std() < MIN_CONTRAST:
        return []
    return [f"{_hash_bits(np.rot90(grey, turn)):016x}" for turn in range(ROTATIONS)]


def hash_bytes(hashes: list[str]) -> np.ndarray:
    """(len(hashes), 8) uint8 rows, as faiss's binary indexes take them."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), np.uint8).reshape(-1, 8)
