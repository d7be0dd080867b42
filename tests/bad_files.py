"""Hostile inputs built in a few bytes: decoder crashes, aspect-ratio bombs, files that are not
files. Each returns what a test writes to disk or sends."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.models.protocol import ImagePreprocessing
from tests.fakes import FakeEncoder


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int) -> bytes:
    """A black 8-bit greyscale PNG compressed row by row: 39,000,000 x 1 is 38 KB."""
    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels)
            + _chunk(b"IEND", b""))


def corrupt_gif() -> bytes:
    """A two-frame GIF cut inside its second frame: PIL raises IndexError (not OSError) when
    it looks for the second frame."""
    out = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    data = out.getvalue()
    second = data.rfind(b"\x21\xf9\x04")  # the second frame's graphic control block
    return data[: second + 20]


def bad_dds() -> bytes:
    """A DDS file with no pixel-format flags: PIL raises NotImplementedError."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="DDS")
    data = bytearray(out.getvalue())
    data[80:84] = bytes(4)  # DDS_PIXELFORMAT.dwFlags
    return bytes(data)


def write_bad_files(folder: Path) -> dict[str, str]:
    """Every kind of bad file in `folder`; name (as the skip report shows it) -> a word of
    the reason expected."""
    folder.mkdir(parents=True, exist_ok=True)
    good = (folder / "good.jpg").read_bytes()
    os.mkfifo(folder / "fifo.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.symlink("self.jpg", folder / "self.jpg")
    long_name = "l" * 246 + ".jpg"  # 250 bytes: its sidecar name dog.jpg.txt is too long
    (folder / long_name).write_bytes(good)
    with open(os.path.join(os.fsencode(folder), b"bad-\xff.jpg"), "wb") as handle:
        handle.write(good)
    (folder / "wide.png").write_bytes(grey_png(39_000_000, 1))
    (folder / "corrupt.gif").write_bytes(corrupt_gif())
    (folder / "texture.jpg").write_bytes(bad_dds())  # a DDS under a .jpg name
    return {"fifo.jpg": "FIFO", "zero.jpg": "character device", "self.jpg": "symbolic links",
            "bad-\\xff.jpg": "UTF-8", "wide.png": "aspect ratio", "corrupt.gif": "IndexError",
            "texture.jpg": "NotImplementedError"}


class PreprocessingEncoder(FakeEncoder):
    """The fake encoder behind a real model's preprocessing (resize the short side to 224,
    centre crop), so what that allocates or raises on an odd image shows in tests."""

    def __init__(self) -> None:
        super().__init__()
        self.real_preprocessing = ImagePreprocessing(size=224, mean=(0.5,) * 3,
                                                     std=(0.5,) * 3)

    def encode_images(self, images):
        from crossmodal.models.preprocess import images_to_tensor

        batch = images_to_tensor(images, self.real_preprocessing)
        means = batch.mean(dim=(2, 3)).numpy()  # colour: what the fake encoder's vectors hold
        squares = [Image.fromarray(np.uint8(np.clip(m * 127.5 + 127.5, 0, 255)).reshape(1, 1, 3)
                                   .repeat(8, 0).repeat(8, 1)) for m in means]
        return super().encode_images(squares)
