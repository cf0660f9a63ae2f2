"""docs/errors.md names every stable error code the server can send, so a code added later (a new error class, a
new code constant on an API surface) cannot ship undocumented.

The codes are found in the code itself, not listed here: every class of the error tree in floatsrv/errors.py
(except the abstract family bases nothing ever raises, which the test proves by scanning floatsrv/ for a
construction of each), the codes /api/v4 answers instead of its own (`_V4_CODE`), and every string constant
the API surfaces under floatsrv/api/ use as a `code`: assigned to a variable or key named `code`, the value of
a `"code"` key in a dict literal, or the argument of a `code` parameter (`error_body`, `error_page`, the framing
handler's `_json_error`, ...).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from floatsrv import errors
from floatsrv.api import errors as api_errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "floatsrv"
DOC = ROOT / "docs" / "errors.md"
_CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def _error_classes(cls: type[errors.FloatsrvError] = errors.FloatsrvError) -> list[type[errors.FloatsrvError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _error_classes(child))]


def _trees(folder: Path) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(folder.rglob("*.py"))]


def _constructed_names() -> set[str]:
    """Names of everything floatsrv/ calls or raises (outside the module that defines the error tree)."""
    names: set[str] = set()
    for path, tree in _trees(PACKAGE):
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(tree):
            target = node.func if isinstance(node, ast.Call) else node.exc if isinstance(node, ast.Raise) else None
            if isinstance(target, ast.Name):
                names.add(target.id)
            elif isinstance(target, ast.Attribute):
                names.add(target.attr)
    return names


def class_codes() -> set[str]:
    """The code of every error class that can reach a client: every leaf, and every base that is raised."""
    constructed = _constructed_names()
    return {
        cls.code
        for cls in _error_classes()
        if not cls.__subclasses__() or cls.__name__ in constructed  # a family base nothing raises is never sent
    }


def _strings(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _code_parameters(trees: list[tuple[Path, ast.Module]]) -> dict[str, int]:
    """Functions under floatsrv/api with a parameter named `code`, and its position among the call's arguments."""
    found: dict[str, int] = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [arg.arg for arg in node.args.posonlyargs + node.args.args]
                if names and names[0] in ("self", "cls"):
                    names = names[1:]
                if "code" in names:
                    found[node.name] = names.index("code")
    return found


def _value_for(target: ast.expr, value: ast.expr) -> ast.expr | None:
    """The part of `value` an assignment gives to a variable or key named `code` within `target`."""
    if isinstance(target, ast.Name):
        return value if target.id == "code" else None
    if isinstance(target, ast.Subscript):
        key = target.slice
        return value if isinstance(key, ast.Constant) and key.value == "code" else None
    if isinstance(target, ast.Tuple):
        for position, element in enumerate(target.elts):
            if (isinstance(element, ast.Name) and element.id == "code") or (
                isinstance(element, ast.Subscript) and _value_for(element, value) is not None
            ):
                if isinstance(value, ast.Tuple) and len(value.elts) == len(target.elts):
                    return value.elts[position]
                return value
    return None


def surface_codes() -> set[str]:
    """String constants the API surfaces (floatsrv/api/, the console included) send as a `code`."""
    trees = _trees(PACKAGE / "api")
    parameters = _code_parameters(trees)
    found: set[str] = set()
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    found |= _strings(_value_for(target, node.value))
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                found |= _strings(_value_for(node.target, node.value))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        found |= _strings(value)
            elif isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                found |= {s for kw in node.keywords if kw.arg == "code" for s in _strings(kw.value)}
                position = parameters.get(name or "")
                if position is not None and position < len(node.args):
                    found |= _strings(node.args[position])
    return found


def sendable_codes() -> set[str]:
    return class_codes() | set(api_errors._V4_CODE.values()) | surface_codes()


def documented_codes() -> set[str]:
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", DOC.read_text()))


def test_every_code_the_server_can_send_is_in_docs_errors_md() -> None:
    codes = sendable_codes()
    assert all(_CODE.match(code) for code in codes), sorted(code for code in codes if not _CODE.match(code))
    missing = sorted(codes - documented_codes())
    assert not missing, f"docs/errors.md does not explain {missing}"


def test_the_scan_finds_what_it_must() -> None:
    """The walk is not vacuous: it sees codes of each kind, from each place that sends them."""
    classes, surfaces = class_codes(), surface_codes()
    # Leaves, and bases raised as themselves; never a family base nothing raises.
    assert {"seat_owned_by_another_login", "login_busy", "floating_not_available", "storage_full"} <= classes
    assert {"validation_error", "not_found", "forbidden", "storage_unavailable"} <= classes
    assert not {"error", "conflict", "limit_reached", "wrong_kind", "auth_error", "license_file_refused"} & classes
    # Routing and internal errors (middleware), malformed framing, readiness, the console's own refusals.
    assert {"not_found", "method_not_allowed", "http_error", "internal_error"} <= surfaces
    assert {"bad_request", "timeout", "not_ready", "csrf_failed"} <= surfaces
