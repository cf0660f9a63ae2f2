"""The bytes of every signed /api/v5 body: JSON that JavaScript's `JSON.stringify(JSON.parse(body))` gives back
byte for byte.

At least one official LicenseSpring SDK verifies a v5 response signature over its own re-serialisation of
the parsed body, so a body is signable only if that round trip is the identity: compact separators, no
trailing newline, raw UTF-8 (no `\\uXXXX` escapes but the control characters JSON must escape, which both
sides escape alike), integers within ±(2**53 - 1) (beyond, JavaScript's numbers lose digits), no fraction
(`1.0` comes back as `1`, and Python and JavaScript write some fractions differently), and no integer-like object key
(JavaScript orders those first, numerically). `problems` names what breaks the rules, so licenses can be
refused when they are loaded (with the field named) instead of a reply failing after its work was done;
`encode` is the one function that writes a signed body.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floatsrv.models import LicenseSpec

MAX_SAFE_INTEGER = 2**53 - 1
# Keys JavaScript treats as array indices and moves to the front of an object.
_INDEX_KEY = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Unsignable(ValueError):
    """A value no signed body may carry (see the module docstring); names where it is."""


def _integral(value: float) -> int | None:
    """A float that is an integer JavaScript holds exactly (`1.0`, read from YAML) as that integer."""
    if math.isfinite(value) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    return None


def _problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) <= MAX_SAFE_INTEGER else f"the integer {value} is beyond ±(2**53-1)"
    if isinstance(value, float):
        return None if _integral(value) is not None else f"the number {value!r} is not an integer; write it as text"
    if isinstance(value, str):
        return "a lone UTF-16 surrogate" if _SURROGATE.search(value) else None
    if isinstance(value, (dict, list)):
        return None
    return f"a {type(value).__name__} is not a JSON value"


def problems(value: Any, where: str) -> list[str]:
    """Why `value` cannot be part of a signed body, one line per place (`where.key[2]: ...`); [] when it can."""
    found: list[str] = []
    pending: list[tuple[str, Any]] = [(where, value)]
    while pending:
        path, item = pending.pop()
        problem = _problem(item)
        if problem is not None:
            found.append(f"{path}: {problem}")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    found.append(f"{path}: the key {key!r} is not text")
                elif _INDEX_KEY.match(key):
                    found.append(f"{path}: the key {key!r} looks like an integer (JavaScript reorders such keys)")
                elif _SURROGATE.search(key):
                    found.append(f"{path}: a key has a lone UTF-16 surrogate")
                else:
                    pending.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return sorted(found)


def license_problems(licenses: Iterable[LicenseSpec]) -> list[str]:
    """With /api/v5 on, what in these licenses a signed reply could not carry: the free-form values (metadata,
    customer) are checked when licenses are loaded, naming the field. Their integers need no check here: the
    license schema bounds each one (`models.MAX_COUNT`), and the counts served from them stop there too."""
    found = []
    for spec in licenses:
        where = f"license {spec.id}"
        found += problems(spec.metadata, f"{where}: metadata")
        found += problems(spec.customer, f"{where}: customer")
        for feature in spec.features:
            found += problems(feature.metadata, f"{where}: feature {feature.code}: metadata")
    return [f"{line} (api_v5 signs it in replies)" for line in found]


def _normalised(value: Any) -> Any:
    """`value` with integral floats as integers; raises Unsignable for anything `problems` names."""
    if isinstance(value, float):
        number = _integral(value)
        if number is None:
            raise Unsignable(f"the number {value!r} cannot be signed")
        return number
    if isinstance(value, dict):
        if any(not isinstance(key, str) or _INDEX_KEY.match(key) for key in value):
            raise Unsignable("an object key cannot be signed")
        return {key: _normalised(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_normalised(child) for child in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        raise Unsignable(f"the integer {value} cannot be signed")
    return value


def encode(value: Any) -> bytes:
    """The signed-body bytes of `value`. Raises Unsignable for what `problems` names (licenses are checked
    when loaded and every count is bounded, so a reply built from them never raises; tests/test_v5_api.py)."""
    try:
        text = json.dumps(_normalised(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, TypeError) as exc:  # a lone surrogate cannot be UTF-8; NaN; an unknown type
        if isinstance(exc, Unsignable):
            raise
        raise Unsignable(str(exc)) from None
