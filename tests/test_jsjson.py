"""The signed-body encoder of /api/v5 (floatsrv.jsjson) against the byte rules a JavaScript client's
`JSON.stringify(JSON.parse(body))` check imposes, and against node itself where it is installed; and the
license schema, whose every integer must stay within what the encoder can write."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from floatsrv import jsjson
from floatsrv.entitlements.payload import LicenseFilePayload
from floatsrv.models import LicenseSpec

SAMPLES: list[Any] = [
    {"message": "pong", "version": "v5"},
    {"name": "Zoë Ångström", "city": "Zürich", "kanji": "東京", "emoji": "🎉", "rtl": "שלום"},
    {"controls": "tab\tnew\nline\r\u0000\u001f\u007f", "quote": 'say "hi" \\ there', "slash": "a/b"},
    {"separators": "\u2028\u2029", "nbsp": "\u00a0"},
    {"big": 2**53 - 1, "small": -(2**53 - 1), "zero": 0, "neg": -5, "t": True, "f": False, "n": None},
    {"nested": [{"a": [1, 2, {"b": []}]}, {}], "empty": "", "list": []},
    {"integral_float": 1.0, "negative_integral": -3.0},
]


def _check_rules(body: bytes) -> None:
    text = body.decode("utf-8")  # raw UTF-8
    assert not text.endswith("\n")
    assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))  # compact
    # No \\u escapes but for the control characters JSON must escape (and JavaScript escapes alike).
    for escape in re.findall(r"(?<!\\)(?:\\\\)*\\u([0-9a-fA-F]{4})", text):
        assert int(escape, 16) < 0x20 and escape == escape.lower(), escape
    parsed = json.loads(text, parse_float=lambda s: pytest.fail(f"a float in a signed body: {s}"))

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                assert not re.fullmatch(r"0|[1-9][0-9]*", key), key
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= 2**53 - 1

    walk(parsed)


@pytest.mark.parametrize("value", SAMPLES)
def test_encoded_bodies_follow_the_rules(value: Any) -> None:
    body = jsjson.encode(value)
    _check_rules(body)
    assert json.loads(body) == value  # the same values (1.0 == 1)


def test_non_ascii_is_raw_utf8_not_escaped() -> None:
    body = jsjson.encode({"name": "Zoë 東京 🎉"})
    assert body == '{"name":"Zoë 東京 🎉"}'.encode()
    assert b"\\u" not in body


def test_integral_floats_are_written_as_integers() -> None:
    assert jsjson.encode({"seats": 3.0, "list": [1.0, -2.0]}) == b'{"seats":3,"list":[1,-2]}'


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"ratio": 0.5}, "is not an integer"),
        ({"huge": 2**53}, "beyond"),
        ({"huge": -(2**53)}, "beyond"),
        ({"huge": 1e300}, "is not an integer"),
        ({"10": "x"}, "looks like an integer"),
        ({"0": "x"}, "looks like an integer"),
        ({"a": {"7": 1}}, "looks like an integer"),
        ({"lone": "\ud800"}, "surrogate"),
        ({"nan": float("nan")}, "is not an integer"),
    ],
)
def test_values_that_break_the_rules_are_named_and_refused(value: Any, problem: str) -> None:
    [line] = jsjson.problems(value, "license 1001: metadata")
    assert line.startswith("license 1001: metadata") and problem in line
    with pytest.raises(jsjson.Unsignable):
        jsjson.encode(value)


def test_keys_that_only_resemble_integers_are_fine() -> None:
    value = {"01": 1, "-1": 2, "1.5": 3, "1e3": 4, "x1": 5}
    assert jsjson.problems(value, "m") == []
    _check_rules(jsjson.encode(value))


def _integers(node: Any, path: str, found: dict[str, dict[str, Any]]) -> None:
    """Every integer-typed schema node under `node`, by its path."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            found[path] = node
        for key, child in node.items():
            _integers(child, f"{path}.{key}", found)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _integers(child, f"{path}[{index}]", found)


@pytest.mark.parametrize("model", [LicenseSpec, LicenseFilePayload])
def test_every_integer_of_a_license_stays_within_what_javascript_holds(model: Any) -> None:
    """A reply built from a license is signed after the request acted: an integer the validator let through
    and the encoder refuses would fail it then. So each one, today's and any added later, has bounds."""
    found: dict[str, dict[str, Any]] = {}
    _integers(model.model_json_schema(), model.__name__, found)
    names = {path.split(".properties.")[-1].split(".")[0] for path in found}
    assert {"floating_users", "max_consumptions", "max_consumption", "max_overages"} <= names, names  # it looks
    unbounded = []
    for path, schema in found.items():
        top = schema.get("maximum", schema.get("exclusiveMaximum", float("inf")) - 1)
        bottom = schema.get("minimum", schema.get("exclusiveMinimum", float("-inf")) + 1)
        if not -jsjson.MAX_SAFE_INTEGER <= bottom <= top <= jsjson.MAX_SAFE_INTEGER:
            unbounded.append(path)
    assert unbounded == [], unbounded


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs)")
def test_javascript_round_trip_gives_the_same_bytes() -> None:
    """What a JavaScript SDK does before it checks the signature: JSON.stringify(JSON.parse(body))."""
    assert NODE is not None
    bodies = [jsjson.encode(value) for value in SAMPLES]
    script = (
        "const lines = require('fs').readFileSync(0, 'utf8').split('\\n');"
        "for (const line of lines) { const b = Buffer.from(line, 'base64').toString('utf8');"
        "process.stdout.write(Buffer.from(JSON.stringify(JSON.parse(b)), 'utf8').toString('base64') + '\\n'); }"
    )
    stdin = "\n".join(base64.b64encode(body).decode() for body in bodies)
    out = subprocess.run([NODE, "-e", script], input=stdin, capture_output=True, text=True, check=True, timeout=30)
    echoed = [base64.b64decode(line) for line in out.stdout.splitlines()]
    assert echoed == bodies
    # And a body that breaks a rule does not survive the round trip: the rules are the right ones.
    broken = [b'{"ratio":1.0}', b'{"b":1,"10":2}', b'{"n":"\\u00e9"}']
    stdin = "\n".join(base64.b64encode(body).decode() for body in broken)
    out = subprocess.run([NODE, "-e", script], input=stdin, capture_output=True, text=True, check=True, timeout=30)
    assert all(base64.b64decode(line) != body for line, body in zip(out.stdout.splitlines(), broken, strict=True))
