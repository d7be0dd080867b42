from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from crossmodal.data.images import ImageLoadError, load_image
from tests.image_helpers import write_image


@pytest.mark.parametrize("name,fmt", [("a.jpg", "JPEG"), ("a.png", "PNG"), ("a.webp", "WEBP"),
                                      ("a.bmp", "BMP"), ("a.gif", "GIF")])
def test_formats_decode_to_rgb(tmp_path, name, fmt):
    path = write_image(tmp_path / name, (200, 30, 30), fmt=fmt)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (32, 24)
    assert image.getpixel((5, 5))[0] > 150


def test_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    red, _, blue = load_image(path).getpixel((8, 8))
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    assert loaded.getpixel((10, 5))[0] > 200  # white half is now on top


def test_bad_files_give_reasons(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="zero-byte"):
        load_image(tmp_path / "zero.jpg")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        load_image(tmp_path / "text.png")
    data = write_image(tmp_path / "ok.png", (1, 2, 3), size=(64, 64)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_pixel_cap_refuses_before_decoding(tmp_path, monkeypatch):
    path = write_image(tmp_path / "big.png", (9, 9, 9), size=(300, 200))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(ImageLoadError, match="60,000 pixels exceeds the cap of 50,000"):
        load_image(path, max_pixels=50_000)
    assert decoded == []  # refused from the header alone


def test_decompression_bomb_header_is_refused():
    # A PNG header claiming 100000 x 100000 pixels, with no real data behind it.
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # keep the chunk valid
    with pytest.raises(ImageLoadError, match="exceeds the cap|bomb"):
        load_image(bytes(data))


def test_large_jpeg_decodes_in_draft_mode(tmp_path):
    path = write_image(tmp_path / "large.jpg", (10, 200, 10), size=(2000, 1500))
    image = load_image(path, target_size=224)
    assert 448 <= min(image.size) < 1500  # reduced at decode, still >= 2x the model input


def test_large_png_shrinks_as_it_decodes_and_keeps_its_orientation(tmp_path):
    image = Image.new("RGBA", (1000, 500), (0, 0, 0, 255))
    image.paste((255, 255, 255, 255), (0, 0, 500, 500))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "large.png"
    image.save(path, exif=exif)
    loaded = load_image(path, target_size=100)
    assert loaded.mode == "RGB" and loaded.size == (250, 500)  # reduced 2x, still >= 200 px
    assert loaded.getpixel((125, 10))[0] > 200 and loaded.getpixel((125, 490))[0] < 50
    assert load_image(path).size == (500, 1000)  # no target size: full resolution
