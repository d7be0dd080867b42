"""One bad file in a photo folder is that file's reported skip: the run goes on, never hangs,
and never reads a file while it holds the index's writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from crossmodal.cli.main import cli
from crossmodal.collection import ingest
from crossmodal.data import loader
from crossmodal.data.files import collect_items
from crossmodal.data.images import ImageLoadError, decode_cost, load_image
from crossmodal.engine import Collection
from crossmodal.models.preprocess import resize_and_crop
from crossmodal.models.protocol import ImagePreprocessing
from crossmodal.paths import NotRegularFileError, open_regular_file
from tests.bad_files import PreprocessingEncoder, bad_dds, corrupt_gif, grey_png, write_bad_files
from tests.fakes import FakeEncoder, as_fake_backend
from tests.image_helpers import write_image


@pytest.fixture
def real_preprocessing(monkeypatch) -> PreprocessingEncoder:
    encoder = PreprocessingEncoder()
    yield from as_fake_backend(monkeypatch, encoder)


@pytest.fixture
def bad_folder(tmp_path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "photos"
    write_image(folder / "good.jpg", (250, 10, 10))
    write_image(folder / "sub" / "fine.png", (10, 250, 10))
    return folder, write_bad_files(folder)


def in_thread(function, timeout: float = 60):
    """function() on a thread; fails the test (instead of hanging it) past `timeout`."""
    result: list = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(function())
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s: hung on a file"
    if errors:
        raise errors[0]
    return result[0]


def test_index_skips_every_bad_file_with_its_reason_and_goes_on(
        tmp_path, bad_folder, real_preprocessing):
    folder, expected = bad_folder
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=real_preprocessing)
    report = in_thread(lambda: collection.add_paths([folder], progress=False))
    indexed = {item["id"] for item in collection.items}
    assert indexed == {"good.jpg", "sub/fine.png", "l" * 246 + ".jpg"}
    assert report.added == 3
    reasons = {Path(path).name: why for path, why in report.skipped_files}
    for name, word in expected.items():
        assert word in reasons.get(name, ""), (name, reasons.get(name))


def test_cli_index_reports_the_skips_in_one_run_without_a_traceback(
        tmp_path, bad_folder, real_preprocessing):
    folder, expected = bad_folder
    result = in_thread(lambda: CliRunner().invoke(cli, [
        "index", str(folder), "--into", str(tmp_path / "index"), "--model", "fake:colours",
        "--quiet"]))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert Collection.open(tmp_path / "index").stats()["items"] == 3


def test_nothing_is_read_or_decoded_while_the_writer_lock_is_held(
        tmp_path, colour_folder, fake_encoder, monkeypatch):
    lock_path = tmp_path / "index" / ".lock"
    reads_under_lock: list[str] = []

    probing = threading.Lock()  # two decode threads probing at once would see each other

    def lock_is_held() -> bool:
        with probing, open(lock_path, "a+") as probe:  # another open file: flock conflicts
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
            return False

    def watched(function, what: str):
        def wrapper(*args, **kwargs):
            if lock_is_held():
                reads_under_lock.append(f"{what} {args[0]}")
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(ingest, "content_hash", watched(ingest.content_hash, "hashed"))
    monkeypatch.setattr(loader, "load_image", watched(loader.load_image, "decoded"))
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    assert collection.add_paths([colour_folder], progress=False).added == 4
    assert reads_under_lock == []


def test_collect_reads_only_regular_files(tmp_path):
    folder = tmp_path / "photos"
    write_image(folder / "good.jpg", (1, 2, 3))
    write_bad_files(folder)
    report = in_thread(lambda: collect_items([folder]))
    assert "wide.png" in {item.id for item in report.items}  # a regular file: decoding decides
    assert not {"fifo.jpg", "zero.jpg", "self.jpg"} & {item.id for item in report.items}
    # A path with a byte that is not UTF-8 is reported printably (the report goes to JSON).
    assert any(path.endswith("bad-\\xff.jpg") for path, _ in report.skipped_files)
    single = collect_items([folder / "fifo.jpg"])  # named on the command line
    assert not single.items and "FIFO" in single.skipped_files[0][1]


@pytest.mark.parametrize(("data", "reason"), [
    (corrupt_gif(), "IndexError"),
    (bad_dds(), "NotImplementedError"),
    (grey_png(39_000_000, 1), "aspect ratio"),
    (grey_png(20_000, 2), "aspect ratio"),
], ids=["corrupt-gif", "dds", "39000000x1-png", "20000x2-png"])
def test_any_decoder_failure_is_an_image_load_error(tmp_path, data, reason):
    with pytest.raises(ImageLoadError, match=reason):
        load_image(data)
    (tmp_path / "file.jpg").write_bytes(data)
    with pytest.raises(ImageLoadError, match=reason):
        load_image(tmp_path / "file.jpg", target_size=224)


def test_images_up_to_the_aspect_cap_load(tmp_path):
    assert load_image(grey_png(2000, 40)).size == (2000, 40)  # 50:1, a long screenshot's
    with pytest.raises(ImageLoadError, match="aspect ratio"):
        load_image(grey_png(2001, 40))


@pytest.mark.parametrize("resize", ["shortest_edge", "squash"])
@pytest.mark.parametrize("size", [(39_000_000, 1), (1, 2_000_000), (20_000, 2)])
def test_preprocessing_takes_any_shape_without_a_huge_intermediate(size, resize):
    prep = ImagePreprocessing(size=224, mean=(0.0,) * 3, std=(1.0,) * 3, resize=resize)
    out = resize_and_crop(Image.new("L", size, 90), prep)  # was: OverflowError or GBs
    assert out.size == (224, 224) and out.mode == "RGB"
    assert out.getpixel((112, 112)) == (90, 90, 90)


def test_preprocessing_of_photo_shapes_is_unchanged():
    prep = ImagePreprocessing(size=224, mean=(0.0,) * 3, std=(1.0,) * 3)
    image = Image.radial_gradient("L").resize((640, 80)).convert("RGB")  # 8:1, the limit
    width, height = image.size
    scale = 224 / height
    expected = image.resize((round(width * scale), 224), Image.Resampling.BICUBIC)
    left = (expected.width - 224) // 2
    expected = expected.crop((left, 0, left + 224, 224))
    assert resize_and_crop(image, prep).tobytes() == expected.tobytes()


def test_a_path_swapped_for_a_fifo_after_the_check_is_refused_without_blocking(
        tmp_path, monkeypatch):
    fifo = tmp_path / "swapped.jpg"
    os.mkfifo(fifo)
    regular = os.stat(__file__)
    monkeypatch.setattr(os, "stat", lambda *args, **kwargs: regular)  # the check saw a file
    with pytest.raises(NotRegularFileError, match="FIFO"):
        in_thread(lambda: open_regular_file(fifo), timeout=10)  # opened non-blocking
    with pytest.raises(NotRegularFileError, match="character device"):
        in_thread(lambda: open_regular_file("/dev/zero"), timeout=10)


class FailsOnBlue(FakeEncoder):
    """A model whose preprocessing fails on one image (as resize did on a 39M x 1 PNG)."""

    def encode_images(self, images):
        if any(image.getpixel((0, 0))[2] > 200 for image in images):
            raise OverflowError("signed integer is greater than maximum")
        return super().encode_images(images)


def test_an_image_the_model_cannot_take_is_skipped_and_the_batch_goes_on(
        tmp_path, colour_folder):
    encoder = FailsOnBlue()
    (colour_folder / "red.txt").write_text("a red square\n" + "red " * 10 + "\n")  # truncated
    collection = Collection.create(tmp_path / "index", model="fake:colours", encoder=encoder)
    report = collection.add_paths([colour_folder], progress=False)
    assert sorted(item["id"] for item in collection.items) == [
        "green.png", "nocaption.bmp", "red.jpg"]
    assert [(Path(path).name, why) for path, why in report.skipped_files] == [
        ("blue.webp", "cannot embed: signed integer is greater than maximum")]
    assert report.truncated == [("red.jpg#1", 12)]  # counted once, not once per try
    assert report.texts == 3


def test_an_encoder_that_fails_on_every_image_is_an_error_not_skips(tmp_path, colour_folder):
    class Broken(FakeEncoder):
        def encode_images(self, images):
            raise RuntimeError("the model is broken")

    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=Broken())
    with pytest.raises(RuntimeError, match="broken"):
        collection.add_paths([colour_folder], progress=False)


def test_a_decode_reserves_what_it_will_allocate_from_the_header(tmp_path):
    reserved: list[int] = []

    def record(nbytes: int):
        reserved.append(nbytes)
        return contextlib.nullcontext()

    write_image(tmp_path / "big.jpg", (200, 30, 30), size=(4000, 3000))
    write_image(tmp_path / "big.png", (200, 30, 30), size=(4000, 3000))
    load_image(tmp_path / "big.jpg", target_size=224, reserve=record)  # decoded at 1/4 scale
    load_image(tmp_path / "big.png", target_size=224, reserve=record)  # in full, then shrunk
    assert reserved == [1000 * 750 * 5, 4000 * 3000 * 5]
    assert decode_cost(10, 10, "P", 224) == 500  # 1 byte a pixel + its RGB copy
    assert decode_cost(10, 10, "CMYK", 224) == 800
    assert decode_cost(10, 10, "L") == 500  # no shrinking: converted to RGB at full size
