"""Dependencies run one way: api -> domain -> db. Domain and db never import aiohttp; api never runs SQL."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "floatsrv"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(*parts: str) -> list[Path]:
    return sorted(PACKAGE.joinpath(*parts).rglob("*.py"))


def test_domain_and_db_do_not_know_http() -> None:
    for path in modules("domain") + modules("db") + modules("auth"):
        bad = {name for name in imports(path) if name.startswith(("aiohttp", "floatsrv.api", "floatsrv.app"))}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_db_does_not_depend_on_the_domain() -> None:
    for path in modules("db"):
        bad = {name for name in imports(path) if name.startswith("floatsrv.domain")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_handlers_never_see_sql() -> None:
    for path in modules("api"):
        found = imports(path)
        bad = {name for name in found if name == "sqlite3" or name.startswith("floatsrv.db")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"
        assert ".execute(" not in path.read_text(), path


def test_modules_stay_small_and_documented() -> None:
    for path in modules():
        text = path.read_text()
        assert len(text.splitlines()) < 500, f"{path.relative_to(PACKAGE)} should be split"
        if text.strip():
            assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(PACKAGE)} needs a module docstring"
