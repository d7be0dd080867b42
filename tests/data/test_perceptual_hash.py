"""Perceptual hashes: close for resized and turned copies, far for other photos."""

from __future__ import annotations

from PIL import Image

from crossmodal.data.perceptual_hash import image_hashes
from tests.paths import SAMPLES


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_perceptual_hashes_find_resized_and_turned_copies_not_other_photos():
    with Image.open(SAMPLES / "dog-grass.jpg") as im:
        photo = im.convert("RGB")
    with Image.open(SAMPLES / "two-dogs.jpg") as im:
        other = im.convert("RGB")
    upright = image_hashes(photo)
    assert len(upright) == 4 and all(len(h) == 16 for h in upright)
    small = image_hashes(photo.resize((photo.width // 3, photo.height // 3)))
    turned = image_hashes(photo.transpose(Image.Transpose.ROTATE_90))
    assert hamming(small[0], upright[0]) <= 4
    assert hamming(turned[0], upright[0]) > 16  # upright against upright: far apart
    assert min(hamming(t, upright[0]) for t in turned) <= 2  # one of its turns matches
    assert min(hamming(h, upright[0]) for h in image_hashes(other)) > 16
    assert image_hashes(Image.new("RGB", (40, 30), (200, 30, 30))) == []  # flat: no hash
