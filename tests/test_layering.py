"""The package's structure, kept by tests: dependencies run one way (layers, no circles), domain and db never
import aiohttp, api never runs SQL, modules stay small and documented, caches are typed, and every write to a
table the writer's memo caches goes through the one module that keeps the memo exact."""

from __future__ import annotations

import ast
import re
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


# --- the writer's memo (db/memo.py) stays exact only if every write to its tables drops or updates it ---

MEMO_TABLES = {"consumption_counters", "usage_events", "addons", "license_addons"}
# The one module that owns the SQL writing each memoised table.
MEMO_OWNERS = {
    "consumption_counters": "db/consumption.py",
    "usage_events": "db/consumption.py",
    "addons": "db/addons.py",
    "license_addons": "db/addons.py",
}
# Functions there that write without touching the memo, and why that keeps it exact.
MEMO_NEUTRAL = {
    ("db/consumption.py", "compact"): "deleted events move into compacted_milli (a trigger); totals stay",
    ("db/consumption.py", "restore_lost"): "its own UPDATE sets only the revision (the memo keeps totals); the "
    "quantity goes through add, which updates the memo",
}
# Triggers that write memoised tables, and who keeps the memo exact for them.
MEMO_TRIGGERS = {
    "usage_events_count": "db.consumption.add adds the same quantity to the memoised total",
    "usage_events_compacted": "moves quantities into compacted_milli; total_milli is unchanged",
}
_WRITE = re.compile(r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+(\w+)", re.IGNORECASE)


def _strings(node: ast.AST) -> str:
    """Every string constant under `node` (f-strings' literal parts included), joined."""
    parts = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return " ".join(parts)


def test_only_the_owner_modules_write_the_memoised_tables() -> None:
    for path in modules():
        relative = str(path.relative_to(PACKAGE))
        for table in _WRITE.findall(_strings(ast.parse(path.read_text()))):
            if table.lower() in MEMO_TABLES:
                assert MEMO_OWNERS[table.lower()] == relative, (
                    f"{relative} writes {table}, which the writer's memo caches: put the SQL in "
                    f"{MEMO_OWNERS[table.lower()]} and keep the memo exact there"
                )


def test_every_owner_function_that_writes_keeps_the_memo_exact() -> None:
    for relative in set(MEMO_OWNERS.values()):
        tree = ast.parse((PACKAGE / relative).read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            writes = {t.lower() for t in _WRITE.findall(_strings(function))} & MEMO_TABLES
            if not writes or (relative, function.name) in MEMO_NEUTRAL:
                continue
            called = {
                n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
                for n in ast.walk(function)
                if isinstance(n, ast.Call)
            }
            assert called & {"_changed", "memo_of", "revive", "replace"}, (
                f"{relative}:{function.name} writes {sorted(writes)} without dropping or updating the memo"
            )


def test_triggers_that_write_memoised_tables_are_accounted_for() -> None:
    trigger = re.compile(r"CREATE TRIGGER (\w+).*?\bEND;", re.DOTALL | re.IGNORECASE)
    for path in sorted(PACKAGE.joinpath("db", "migrations").glob("*.sql")):
        for match in trigger.finditer(path.read_text()):
            writes = {t.lower() for t in _WRITE.findall(match.group(0))} & MEMO_TABLES
            if writes:
                assert match.group(1) in MEMO_TRIGGERS, f"{path.name}: trigger {match.group(1)} writes {writes}"


# --- imports: one way, no circles ---

# Layers, lowest first: a module may import its own layer and the ones below, never one above.
LAYERS: list[tuple[str, ...]] = [
    # shared definitions and pure helpers
    ("floatsrv", "floatsrv.errors", "floatsrv.times", "floatsrv.quantity", "floatsrv.periods", "floatsrv.clock",
     "floatsrv.log", "floatsrv.signing", "floatsrv.models", "floatsrv.config", "floatsrv.entitlements",
     "floatsrv.auth.passwords", "floatsrv.auth.apikeys", "floatsrv.auth.hashing", "floatsrv.auth.throttle",
     "floatsrv.auth.login", "floatsrv.auth.tokens"),
    ("floatsrv.db",),
    ("floatsrv.auth.guard",),
    ("floatsrv.domain",),
    ("floatsrv.upstream", "floatsrv.appkeys", "floatsrv.licenselog"),
    ("floatsrv.api", "floatsrv.workers"),
    ("floatsrv.app", "floatsrv.reload", "floatsrv.server", "floatsrv.cli",
     "floatsrv.container", "floatsrv.__main__"),
]  # fmt: skip
# Siblings in one layer that must not lean on each other.
APART = [("floatsrv.api", "floatsrv.workers")]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(name: str) -> int:
    best, rank = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{name} is in no layer of tests/test_layering.py"
    return rank


def runtime_imports(path: Path) -> set[str]:
    """floatsrv modules `path` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    known = {_module_name(p) for p in modules()}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("floatsrv"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("floatsrv"))
    return found


def test_no_module_imports_a_higher_layer() -> None:
    for path in modules():
        name = _module_name(path)
        for imported in runtime_imports(path):
            assert _layer(imported) <= _layer(name), f"{name} imports {imported}, which is a layer above it"
            for first, second in APART:
                for a, b in ((first, second), (second, first)):
                    if name.startswith(a) and imported.startswith(b):
                        raise AssertionError(f"{name} imports {imported}: {a} and {b} must not lean on each other")


def test_no_import_circles() -> None:
    graph = {_module_name(path): runtime_imports(path) for path in modules()}
    for name in graph:
        graph[name] = {other for other in graph[name] if other in graph and other != name}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in done:
            return
        assert name not in visiting, "import circle: " + " -> ".join([*trail[trail.index(name) :], name])
        visiting.add(name)
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_no_any_typed_caches() -> None:
    """Caches are typed: no `dict[Any, Any]` (or `dict[str, Any]` attribute named like a cache) anywhere."""
    for path in modules():
        text = path.read_text()
        assert "dict[Any, Any]" not in text, f"{path.relative_to(PACKAGE)} has an Any-typed mapping"
        assert not re.search(r"(?:cache|memo|derived)\w*\s*:\s*dict\[\w+, Any\]", text), path
