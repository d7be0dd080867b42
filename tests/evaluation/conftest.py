"""Shared by the evaluation tests: three solid-colour photos, two captions each."""

from __future__ import annotations

import pytest

from crossmodal.data.dataset import RetrievalDataset
from tests.image_helpers import write_image

COLOURS = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}


@pytest.fixture
def colour_dataset(tmp_path) -> RetrievalDataset:
    data = RetrievalDataset("colours")
    for name, rgb in COLOURS.items():
        row = data.add_image(name, write_image(tmp_path / f"{name}.png", rgb))
        data.add_text(f"a {name} square", row)
        data.add_text(f"{name}", row)
    return data
