from __future__ import annotations

import pytest

from crossmodal.errors import BadInputError
from crossmodal.index.filters import parse_filter
from crossmodal.index.metadata import item_metadata

ROW = {"source": "beach/dog.jpg", "folder": "beach", "mtime": 1_700_000_000, "score": 0.5,
       "date": "2023-11-14", "flag": True}


@pytest.mark.parametrize("text, expected", [
    ('source like "beach/%"', True),
    ("source like 'beach/_og.jpg'", True),
    ('source like "beach"', False),  # like matches the whole value
    ("folder=beach", True),  # bare word from a shell
    ("folder != beach", False),
    ("mtime > 1600000000 and score <= 0.5", True),
    ('date >= "2024-01-01" or flag = true', True),
    ("not (folder = beach)", False),
    ('folder in ["city", "beach"]', True),
    ("folder not in [beach]", False),
    ("missing = 1", False),  # a row without the field never matches
    ('mtime > "abc"', False),  # mismatched types: no match, not an error
])
def test_filters_match_rows(text, expected):
    assert parse_filter(text).matches(ROW) is expected


def test_milvus_expression_and_parse_errors():
    where = parse_filter('folder = beach and (mtime > 5 or tag in ["a", 2]) and not x like "q%"')
    # Filter.to_milvus (the whole tree) is gone, unused: Milvus stores search the superset.
    assert where.milvus_superset() == (
        '($meta["folder"] == "beach" and ($meta["mtime"] > 5 or ($meta["tag"] == "a" or '
        '$meta["tag"] == 2)))')
    assert where.fields() == {"folder", "mtime", "tag", "x"}
    assert parse_filter("  ") is None and parse_filter(None) is None
    for bad in ("folder ==", "= beach", "(folder = a", "folder ~ a", "a = 1 b = 2",
                "and = 1", "x like 3", "x not = 1"):
        with pytest.raises(BadInputError, match="bad filter"):
            parse_filter(bad)


@pytest.mark.parametrize("text, value", [
    (r'name == "a\"b"', 'a"b'),  # \" and \\ are escapes, as the tokenizer reads them
    (r"name == 'it\'s'", "it's"),
    (r'name == "a\\b"', "a\\b"),
    (r'name == "a\\\"b"', 'a\\"b'),
    (r"name like 'C:\x%'", "C:\\x%"),  # any other backslash is kept: Windows paths work
    (r'name == "tab\tnew\n"', "tab\\tnew\\n"),
    ('name == "été"', "été"),
])
def test_string_escapes(text, value):
    where = parse_filter(text)
    assert where.tree.value == value
    assert where.matches({"name": value.replace("%", "xyz")})


@pytest.mark.parametrize("pattern, matching", [
    (r"'a\%'", ["a%"]),  # \% \_ \\ in a like pattern: the character itself, as in Milvus
    (r"'a\_'", ["a_"]),
    (r"'a\%%'", ["a%", "a%b"]),
    (r"'a\\\\%'", ["a\\", "a\\%", "a\\\\b", "a\\_", "a\\b"]),  # \\\\ in quotes: one \ in like
    (r"'C:\x%'", ["C:\\xyz"]),  # any other backslash is itself
])
def test_like_escapes(pattern, matching):
    values = ["a%", "a%b", "a\\b", "a_", "ab", "a\\%", "a\\\\b", "a\\", "C:\\xyz", "a\\_"]
    where = parse_filter(f"label like {pattern}")
    assert [v for v in values if where.matches({"label": v})] == sorted(matching, key=values.index)


def test_like_pattern_ending_in_a_lone_backslash_is_refused():
    with pytest.raises(BadInputError, match="lone backslash"):
        parse_filter(r"label like 'a\\'")
    assert parse_filter(r"label like 'a\\\\'").matches({"label": "a\\"})


def test_deep_nesting_is_a_bad_filter_not_a_crash():
    with pytest.raises(BadInputError, match="nested"):
        parse_filter("(" * 2000 + "a = 1" + ")" * 2000)
    with pytest.raises(BadInputError, match="nested"):
        parse_filter("not " * 2000 + "a = 1")
    assert parse_filter("not " * 10 + "a = 1").matches({"a": 1})


def test_item_metadata_fields():
    row = item_metadata({"id": "beach/dog.jpg", "path": "/p/beach/dog.jpg", "captions": [],
                         "mtime_ns": 1_700_000_000_123_456_789, "meta": {"camera": "x"}},
                        "text", 2)
    assert row == {"item_id": "beach/dog.jpg", "source": "beach/dog.jpg", "folder": "beach",
                   "name": "dog.jpg", "path": "/p/beach/dog.jpg", "modality": "text",
                   "caption": 2, "caption_source": "file", "mtime": 1_700_000_000,
                   "date": "2023-11-14", "camera": "x"}
    read = item_metadata({"id": "a", "captions": ["x", "EXIT"],
                          "caption_sources": ["file", "ocr"]}, "text", 1)
    assert read["caption_source"] == "ocr"  # text read in the photo (index --ocr)
    with pytest.raises(BadInputError, match="must be a string"):
        item_metadata({"id": "a", "meta": {"tags": ["x"]}})


@pytest.mark.parametrize("text, value, expected", [
    ('name like "a_b"', "axb", True),  # _ is one character on every store
    ('name like "a_b"', "ab", False),
    (r'name like "a\_b"', "a_b", True),  # a backslash makes the next character literal
    (r'name like "a\_b"', "axb", False),
    (r'name like "a\\_b"', "axb", False),  # the same pattern, JSON-escaped
    (r'name like "100\%"', "100%", True),
    (r'name like "100\%"', "1000", False),
    ('name like "%dog%"', "a/hot dog.jpg", True),
    ('name like "%"', "", True),
    ("flag = 1", True, False),  # booleans are not numbers
    ("flag != 1", True, True),
    ("flag in [1]", True, False),
    ("flag < 2", True, False),
    ("x = 2", 2.0, True),  # ints and floats are both numbers
])
def test_like_and_type_semantics(text, value, expected):
    field = text.split()[0]
    assert parse_filter(text).matches({field: value}) is expected


@pytest.mark.parametrize("text, superset", [
    ('source like "samples/%"', '$meta["source"] like "samples/%"'),
    ('source like "samples/x.jpg"', '$meta["source"] == "samples/x.jpg"'),
    ('source like "samples/_ayak.jpg"', '$meta["source"] like "samples/%"'),  # checked after
    ('source like "%dog%"', ""),  # no prefix: nothing Milvus can narrow by
    (r'name like "a\_b%"', '$meta["name"] like "a%"'),  # a literal _ is not sent to Milvus
    ("not folder = a and mtime > 3", '($meta["mtime"] > 3)'),  # not of a superset is none
    ('folder = a or name like "%x"', ""),
    ('folder in ["a", "b"]', '($meta["folder"] == "a" or $meta["folder"] == "b")'),
])
def test_milvus_superset(text, superset):
    assert parse_filter(text).milvus_superset() == superset
