"""The MCP server, driven by the SDK's own client over stdio (a real subprocess)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from tests.image_helpers import write_image
from tests.paths import REPO
from tests.serve_helpers import build_index, png_bytes

mcp = pytest.importorskip("mcp")

# `crossmodal mcp IDX` as the console script runs it, with the fake encoder registered first
# (the subprocess cannot see the test's monkeypatching).
FAKE_SERVER = """
import sys
from crossmodal.models import registry
from tests.fakes import FakeEncoder
registry.register_backend("fake", lambda name, model_id: FakeEncoder())
from crossmodal.cli.main import cli
cli(["mcp", sys.argv[1]])
"""


def server_params(*args: str) -> mcp.StdioServerParameters:
    path = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {"PYTHONPATH": path, "CROSSMODAL_CACHE": os.environ["CROSSMODAL_CACHE"],
           "CROSSMODAL_ONNX_CACHE": os.environ["CROSSMODAL_ONNX_CACHE"],
           "HF_HUB_OFFLINE": "1"}
    return mcp.StdioServerParameters(command=sys.executable, args=list(args), env=env,
                                     cwd=str(REPO))


async def calls(params, *requests: tuple[str, dict]) -> tuple[list[str], list]:
    async with mcp.Client(params, read_timeout_seconds=120) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        return tools, [await client.call_tool(name, args) for name, args in requests]


def hit_ids(result) -> list[str]:
    assert not result.is_error, result.content
    return [h["id"] for h in result.structured_content["hits"]]


@pytest.fixture
def index(tmp_path, colour_folder, fake_encoder):
    return build_index(tmp_path, colour_folder, fake_encoder)


def test_tools_over_stdio(index, colour_folder):
    blue = base64.b64encode(png_bytes((10, 10, 250))).decode()
    tools, (text, texts, by_path, by_b64, like, cut, item, words) = asyncio.run(calls(
        server_params("-c", FAKE_SERVER, str(index)),
        ("search_text", {"query": "red", "k": 2}),
        ("search_text", {"query": "green", "target": "texts", "k": 1}),
        ("search_image", {"path": str(colour_folder / "green.png"), "k": 1}),
        ("search_image", {"image_base64": blue, "k": 1}),
        ("search_like", {"id": "red.jpg", "k": 1}),
        ("search_text", {"query": "red", "min_score": 0.9}),
        ("get_item", {"id": "sub/blue.webp"}),
        ("search_text", {"query": "sea", "mode": "keyword", "k": 3}),
    ))
    assert tools == ["get_item", "search_image", "search_like", "search_text"]
    assert hit_ids(text)[0] == "red.jpg" and len(hit_ids(text)) == 2
    assert texts.structured_content["hits"][0]["text"] == "green field"
    assert hit_ids(by_path) == ["green.png"]
    assert hit_ids(by_b64) == ["sub/blue.webp"]
    assert hit_ids(like) != ["red.jpg"] and len(hit_ids(like)) == 1
    assert hit_ids(cut) == ["red.jpg"]
    record, thumbnail = item.content
    assert json.loads(record.text)["captions"] == ["deep blue sea"]
    assert thumbnail.type == "image" and thumbnail.mime_type == "image/jpeg"
    assert base64.b64decode(thumbnail.data)[:2] == b"\xff\xd8"  # a JPEG
    assert hit_ids(words) == ["sub/blue.webp"]  # the one caption with the word


def test_bad_arguments_are_one_line_tool_errors(index, tmp_path):
    _, results = asyncio.run(calls(
        server_params("-c", FAKE_SERVER, str(index)),
        ("search_text", {"query": "  "}),
        ("search_image", {"image_base64": "%%%"}),
        ("search_image", {}),
        ("search_image", {"path": str(tmp_path / "none.jpg")}),
        ("search_image", {"image_base64": base64.b64encode(b"not an image").decode()}),
        ("search_like", {"id": "nope.jpg"}),
        ("get_item", {"id": "../etc/passwd"}),
        ("search_text", {"query": "red", "min_score": "lots"}),
        ("search_text", {"query": "red", "k": 0}),
    ))
    said = [r.content[0].text for r in results]
    assert all(r.is_error for r in results), said
    for text, expected in zip(said, ["the query text is empty", "not valid base64",
                                     "exactly one of path", "no image file at",
                                     "cannot use query image", "no item or caption 'nope.jpg'",
                                     "not a relative path", "--min-score must be",
                                     "k must be between 1 and 100"], strict=True):
        assert expected in text and "\n" not in text.strip(), text


def test_a_commit_meanwhile_is_seen(index, tmp_path, fake_encoder):
    """An item indexed by another process after the server started is found."""
    from crossmodal.engine import Collection

    async def run():
        async with mcp.Client(server_params("-c", FAKE_SERVER, str(index)),
                              read_timeout_seconds=120) as client:
            before = await client.call_tool("search_text", {"query": "red", "k": 1})
            photo = write_image(tmp_path / "more" / "crimson.png", (255, 0, 0))
            Collection.open(index, encoder=fake_encoder).add_paths([photo.parent],
                                                                   progress=False)
            after = await client.call_tool("search_text", {"query": "red", "k": 5})
            return before, after
    before, after = asyncio.run(run())
    assert "crimson.png" not in hit_ids(before) and "crimson.png" in hit_ids(after)


def test_missing_index_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["mcp", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: no crossmodal index at {tmp_path / 'none'}: build one with "
        f"`crossmodal index DIR --into {tmp_path / 'none'}`"]


def test_console_entry_with_the_real_model(tmp_path):
    """`python -m crossmodal.cli.main mcp IDX` on a towers:lite-en index of three photos:
    nothing but the protocol on stdout, the shipped calibrated cut-off usable."""
    from PIL import Image, ImageDraw

    from crossmodal.engine import Collection

    for name, colour in (("red", (220, 30, 30)), ("green", (30, 200, 30)),
                         ("blue", (30, 30, 220))):
        image = Image.new("RGB", (224, 224), (240, 240, 240))
        ImageDraw.Draw(image).ellipse((40, 40, 180, 180), fill=colour)
        (tmp_path / "photos").mkdir(exist_ok=True)
        image.save(tmp_path / "photos" / f"{name}.jpg")
    Collection.create(tmp_path / "idx", model="towers:lite-en").add_paths(
        [tmp_path / "photos"], progress=False)
    _, (found, strict) = asyncio.run(calls(
        server_params("-m", "crossmodal.cli.main", "mcp", str(tmp_path / "idx")),
        ("search_text", {"query": "a red circle", "k": 3}),
        ("search_text", {"query": "a red circle", "min_score": "auto"}),
    ))
    assert hit_ids(found)[0] == "red.jpg"
    assert not strict.is_error  # auto resolves for the shipped weights (it may keep none)


def test_a_collection_in_milvus_over_mcp(milvus_target, colour_folder, tmp_path, fake_encoder):
    """`crossmodal mcp milvus://...`: the tools over a collection in Milvus; an item another
    process adds is found once past the read bound."""
    import time

    from crossmodal.collection.milvus_collection import MilvusCollection
    from crossmodal.collection.milvus_schema import STALENESS_MS

    collection = MilvusCollection.create(milvus_target, model="fake:colours",
                                         encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)

    async def run():
        async with mcp.Client(server_params("-c", FAKE_SERVER, milvus_target),
                              read_timeout_seconds=120) as client:
            before = await client.call_tool("search_text", {"query": "red", "k": 5,
                                                            "where": 'folder = "."'})
            photo = write_image(tmp_path / "more" / "crimson.png", (255, 0, 0))
            collection.add_paths([photo.parent], progress=False)
            time.sleep(STALENESS_MS / 1000)
            after = await client.call_tool("search_text", {"query": "red", "k": 5})
            return before, after
    before, after = asyncio.run(run())
    assert hit_ids(before)[0] == "red.jpg" and "sub/blue.webp" not in hit_ids(before)
    assert "crimson.png" in hit_ids(after)
    collection.close()
