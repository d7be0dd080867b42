r"""Metadata filters: one small expression language, honoured by every vector store.

    source like "beach/%"            folder == "beach" and date >= "2024-01-01"
    modality = image                 not (mtime < 1700000000 or camera in ["a", "b"])

A filter is parsed once into a tree and means the same on every store: `matches` (Python) is
the meaning. The faiss store evaluates it on each row; Milvus stores ask Milvus for a superset
(`milvus_superset`: only what every Milvus reads as we do) and keep the rows that `matches`.
Milvus itself differs where the tree does not: a Milvus server takes only prefix patterns and
reads `_` literally, Milvus Lite drops rows without the field under `not`.

`near(LAT, LON, DISTANCE)` keeps rows whose `lat`/`lon` fields (a photo's GPS position) lie
within DISTANCE of that point, along the earth's surface: `near(48.8566, 2.3522, 5km)`;
the unit is km (the default), m or mi.

`key=value` with an unquoted word is accepted as a string, so `--where folder=beach` works in a
shell. A row without the field never matches a comparison on it (so `not` of one does).
Booleans are not numbers: `flag = 1` does not match true.

Inside a quoted string a backslash escapes the next quote or backslash (`"a\"b"` is a"b,
`'it\'s'` is it's, `"a\\b"` is a\b); any other backslash is kept as it is, so
`'C:\photos%'` means what it says. There are no `\n`-style escapes. In a `like` pattern
`%` is any run of characters and `_` one character; `\%`, `\_` and `\\` there are those
characters themselves (so `'100\%'` matches "100%", `"a\_b"` matches a_b, not axb); any
other backslash is itself.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from crossmodal.errors import BadInputError
from crossmodal.index.geo import EARTH_RADIUS_KM, distance_km, haversine_km

Value = str | int | float | bool
_TOKEN = re.compile(r"""\s*(?:(?P<distance>\d+(?:\.\d*)?\s*(?:km|mi|m)\b)
    |(?P<number>-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)(?![\w.])
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op>==|!=|<=|>=|=|<|>|\(|\)|\[|\]|,)
    |(?P<word>[A-Za-z_][\w./%-]*))""", re.VERBOSE)
_ESCAPE = re.compile(r"""\\(["'\\])""")  # the pairs the string token lets through
_LIKE_TOKEN = re.compile(r"\\[%_\\]|.", re.DOTALL)
_MAX_DEPTH = 64  # nested parentheses and nots: deeper is refused, not a RecursionError
_KEYWORDS = {"and", "or", "not", "like", "in", "true", "false"}
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # ==, !=, <, <=, >, >=, like, in
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class Logic:
    op: str  # and, or, not
    parts: tuple[Compare | Logic, ...]


@dataclass(frozen=True)
class Near:
    lat: float
    lon: float
    km: float


Node = Compare | Logic | Near


@dataclass(frozen=True)
class Filter:
    text: str
    tree: Node

    def matches(self, row: dict) -> bool:
        return _evaluate(self.tree, row)

    def milvus_superset(self) -> str:
        """A Milvus expression every matching row satisfies ("" when none is safe): what a
        Milvus store searches with before keeping the rows that `matches`."""
        return _superset(self.tree) or ""

    def fields(self) -> set[str]:
        return _fields(self.tree)


def parse_filter(text: str | Filter | None) -> Filter | None:
    """None for no filter; a BadInputError that points at the problem for a malformed one."""
    if text is None or isinstance(text, Filter):
        return text
    if not text.strip():
        return None
    return _parse_cached(text.strip())


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> Filter:
    parser = _Parser(text)
    tree = parser.expression()
    if parser.peek() is not None:
        parser.fail(f"unexpected '{parser.peek()[1]}'")
    return Filter(text, tree)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if not match:
                self.fail(f"cannot read '{text[position:].strip()[:20]}'")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.at = 0
        self.depth = 0

    def fail(self, why: str):
        raise BadInputError(
            f"bad filter {self.text!r}: {why}. Write comparisons like source like \"beach/%\", "
            "folder = beach, taken >= \"2024-06-01\", modality in [\"image\"], "
            "near(48.85, 2.35, 5km), joined by and/or/not")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            self.fail("it ends too early")
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() == word:
            self.at += 1
            return True
        return False

    def expression(self) -> Node:
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Logic("or", tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.negation()]
        while self.keyword("and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Logic("and", tuple(parts))

    def negation(self) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(f"more than {_MAX_DEPTH} nested parentheses or nots")
        if self.keyword("not"):
            node: Node = Logic("not", (self.negation(),))
        elif self.peek() == ("op", "("):
            self.take()
            node = self.expression()
            if self.take() != ("op", ")"):
                self.fail("a '(' is not closed")
        else:
            node = self.comparison()
        self.depth -= 1
        return node

    def comparison(self) -> Compare | Near | Logic:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() == "near" and \
                self.tokens[self.at + 1:self.at + 2] == [("op", "(")]:
            return self.near()
        kind, field = self.take()
        if kind != "word" or not _IDENT.match(field) or field.lower() in _KEYWORDS:
            self.fail(f"expected a field name, got '{field}'")
        if self.keyword("like"):
            value = self.value()
            if not isinstance(value, str):
                self.fail("like needs a string pattern")
            if (len(value) - len(value.rstrip("\\"))) % 2:  # Milvus matches nothing then
                self.fail("a like pattern cannot end in a lone backslash (two for a literal one)")
            return Compare(field, "like", value)
        negated = self.keyword("not")
        if self.keyword("in"):
            node = Compare(field, "in", self.values())
            return Logic("not", (node,)) if negated else node
        if negated:
            self.fail("'not' after a field name must be followed by 'in'")
        kind, op = self.take()
        if kind != "op" or op not in ("==", "=", "!=", "<", "<=", ">", ">="):
            self.fail(f"expected a comparison after '{field}', got '{op}'")
        return Compare(field, "==" if op == "=" else op, self.value())

    def near(self) -> Near:
        self.at += 2  # near (
        usage = "near takes (latitude, longitude, distance), e.g. near(48.85, 2.35, 5km)"
        numbers: list[float] = []
        for what in ("latitude", "longitude"):
            kind, text = self.take()
            if kind != "number" or self.take() != ("op", ","):
                self.fail(f"{usage}; the {what} must be a number in degrees")
            numbers.append(float(text))
        kind, text = self.take()
        if kind not in ("number", "distance") or self.take() != ("op", ")"):
            self.fail(f"{usage}; the distance is a number with km, m or mi")
        km = distance_km(text)
        lat, lon = numbers
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            self.fail(f"near({lat:g}, {lon:g}, ...): latitude is -90..90 and longitude "
                      "-180..180 (degrees, south and west negative)")
        if not 0 < km < math.inf:
            self.fail("the distance of near(...) must be above 0")
        return Near(lat, lon, km)

    def values(self) -> tuple[Value, ...]:
        if self.take() != ("op", "["):
            self.fail("in needs a list: in [\"a\", \"b\"]")
        items: list[Value] = []
        while self.peek() != ("op", "]"):
            items.append(self.value())
            if self.peek() == ("op", ","):
                self.take()
        self.take()
        return tuple(items)

    def value(self) -> Value:
        kind, text = self.take()
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            return _ESCAPE.sub(r"\1", text[1:-1])
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "word":
            return text  # a bare word: key=value from a shell
        self.fail(f"expected a value, got '{text}'")
        raise AssertionError("unreachable")


def _like_parts(pattern: str) -> list[str]:
    """The pattern as wildcards ("%" or "_", one character) and literal characters (a
    backslash then the character): `\\%`, `\\_` and `\\\\` are literals, any other
    backslash is itself."""
    return [token if token in ("%", "_") else "\\" + token[-1]
            for token in _LIKE_TOKEN.findall(pattern)]


def _like(pattern: str) -> re.Pattern:
    wildcard = {"%": ".*", "_": "."}
    return re.compile("".join(wildcard.get(part) or re.escape(part[1]) for part in
                              _like_parts(pattern)), re.DOTALL)


_LIKE = lru_cache(maxsize=64)(_like)


def _same(have: object, want: Value) -> bool:
    return have == want and isinstance(have, bool) == isinstance(want, bool)


def _compare(have: object, op: str, want: Value | tuple[Value, ...]) -> bool:
    if op == "in":
        return any(_same(have, value) for value in want)
    if op == "like":
        return isinstance(have, str) and _LIKE(want).fullmatch(have) is not None
    if op == "==":
        return _same(have, want)
    if op == "!=":
        return not _same(have, want)
    if isinstance(have, bool) or isinstance(want, bool):
        return False  # true < 2 is no question a filter asks
    try:
        return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]
    except TypeError:  # a string field compared with a number: no match, as in Milvus
        return False


def _evaluate(node: Node, row: dict) -> bool:
    if isinstance(node, Near):
        lat, lon = row.get("lat"), row.get("lon")
        return _is_number(lat) and _is_number(lon) and (
            haversine_km(node.lat, node.lon, lat, lon) <= node.km)
    if isinstance(node, Compare):
        return node.field in row and _compare(row[node.field], node.op, node.value)
    if node.op == "and":
        return all(_evaluate(part, row) for part in node.parts)
    if node.op == "or":
        return any(_evaluate(part, row) for part in node.parts)
    return not _evaluate(node.parts[0], row)


def _literal(value: Value | tuple[Value, ...]) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _milvus(node: Compare) -> str:
    """A comparison in Milvus's syntax. Metadata are Milvus dynamic fields: named as
    $meta["x"], so a field may share a name with an expression keyword; `in` is spelled out
    as equalities, which Milvus Lite needs."""
    field = f"$meta[{json.dumps(node.field)}]"
    if node.op == "in":
        if not node.value:
            return "(id < 0)"  # keys are never negative: an empty list matches nothing
        return "(" + " or ".join(f"{field} == {_literal(v)}" for v in node.value) + ")"
    return f"{field} {node.op} {_literal(node.value)}"


def _near_box(node: Near) -> str:
    """A latitude (and, away from the poles and the 180th meridian, longitude) band holding
    every point within node.km: what a Milvus store can ask for before the exact distance."""
    margin = 1.001  # rounding never drops a row at the edge
    lat_span = math.degrees(node.km / EARTH_RADIUS_KM) * margin + 1e-6
    lat, lon = '$meta["lat"]', '$meta["lon"]'
    box = [f"{lat} >= {node.lat - lat_span!r}", f"{lat} <= {node.lat + lat_span!r}"]
    top = abs(node.lat) + lat_span
    if top < 89:
        lon_span = lat_span / math.cos(math.radians(top))
        if node.lon - lon_span >= -180 and node.lon + lon_span <= 180:
            box += [f"{lon} >= {node.lon - lon_span!r}", f"{lon} <= {node.lon + lon_span!r}"]
    return "(" + " and ".join(box) + ")"


def _superset(node: Node) -> str | None:
    """A Milvus expression true for every row the node matches; None: no safe constraint.
    Safe: ==, <, <=, >, >=, `in`, and a like pattern's literal prefix. Not safe: `not` of a
    superset, and `!=` (Milvus Lite reads true as 1: `x != 1` drops x = true)."""
    if isinstance(node, Near):
        return _near_box(node)
    if isinstance(node, Compare):
        field = f"$meta[{json.dumps(node.field)}]"
        if node.op == "!=":
            return None
        if node.op != "like":
            return _milvus(node)
        prefix = ""
        for part in _like_parts(node.value):
            if len(part) == 1 or part[1] in "%_\\":  # a wildcard, or a literal Milvus reads
                break                                # as one (or as an escape)
            prefix += part[1]
        else:
            return f"{field} == {_literal(prefix)}"
        return f"{field} like {_literal(prefix + '%')}" if prefix else None
    if node.op == "not":
        return None
    parts = [_superset(part) for part in node.parts]
    if node.op == "or":
        return None if None in parts else "(" + " or ".join(parts) + ")"
    kept = [part for part in parts if part is not None]
    return "(" + " and ".join(kept) + ")" if kept else None


def _fields(node: Node) -> set[str]:
    if isinstance(node, Near):
        return {"lat", "lon"}
    if isinstance(node, Compare):
        return {node.field}
    return set().union(*(_fields(part) for part in node.parts))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
