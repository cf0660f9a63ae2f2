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
# A statement writing a table, and the table (SQLite's OR clauses; PostgreSQL's ONLY, schema and quoted names).
_WRITE = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM|REPLACE\s+INTO|MERGE\s+INTO"
    r"|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?(?:\"?\w+\"?\.)?\"?(\w+)",
    re.IGNORECASE,
)


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


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def sqlite_trigger_writes(sql: str) -> dict[str, set[str]]:
    """SQLite: trigger name -> the memoised tables its body writes."""
    sql = _without_comments(sql)
    trigger = re.compile(r"CREATE\s+TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+).*?\bEND;", re.DOTALL | re.IGNORECASE)
    found = {m.group(1): {t.lower() for t in _WRITE.findall(m.group(0))} & MEMO_TABLES for m in trigger.finditer(sql)}
    assert len(found) == len(re.findall(r"\bCREATE\s+TRIGGER\b", sql, re.IGNORECASE)), "a trigger not read"
    return found


_PG_FUNCTION = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+(?:\w+\.)?(\w+)\s*\(.*?\bAS\s+(\$\w*\$)(.*?)\2",
    re.DOTALL | re.IGNORECASE,
)
_PG_TRIGGER = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+(\w+)\b.*?"
    r"\bEXECUTE\s+(?:FUNCTION|PROCEDURE)\s+(?:\w+\.)?(\w+)\s*\(",
    re.DOTALL | re.IGNORECASE,
)


def pg_trigger_writes(sql: str) -> dict[str, set[str]]:
    """PostgreSQL: trigger name -> the memoised tables written by the function it executes (a body between
    dollar quotes; the functions that body calls count too). A function writing them that no trigger runs
    is listed as `function NAME()`: anything may call it. A definition these patterns cannot read fails."""
    sql = _without_comments(sql)
    bodies = {m.group(1).lower(): m.group(3) for m in _PG_FUNCTION.finditer(sql)}
    defined = re.findall(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\b", sql, re.IGNORECASE)
    assert len(defined) == len(list(_PG_FUNCTION.finditer(sql))), "a function not read (body not in $$ quotes?)"
    outside = _PG_FUNCTION.sub(" ", sql)  # the CREATE TRIGGER statements, without function bodies
    triggers = {m.group(1): m.group(2).lower() for m in _PG_TRIGGER.finditer(outside)}
    created = re.findall(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\b", outside, re.IGNORECASE)
    assert len(created) == len(triggers), "a trigger not read"

    def writes(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        body = bodies.get(name, "")
        found = {t.lower() for t in _WRITE.findall(body)} & MEMO_TABLES
        for called in {c.lower() for c in re.findall(r"\b(\w+)\s*\(", body)} & set(bodies) - seen - {name}:
            found |= writes(called, seen | {name})
        return found

    found = {trigger: writes(function) for trigger, function in triggers.items()}
    found.update({f"function {f}()": writes(f) for f in set(bodies) - set(triggers.values()) if writes(f)})
    return found


def test_triggers_that_write_memoised_tables_are_accounted_for() -> None:
    """On both backends: SQLite's triggers (`migrations/`), PostgreSQL's trigger functions (`pgmigrations/`,
    read as one text: a function may be defined by one migration and attached by a later one)."""
    sqlite = {p.name: p.read_text() for p in sorted(PACKAGE.joinpath("db", "migrations").glob("*.sql"))}
    pg = "\n".join(p.read_text() for p in sorted(PACKAGE.joinpath("db", "pgmigrations").glob("*.sql")))
    assert sqlite and pg
    for where, found in [
        *((f"migrations/{name}", sqlite_trigger_writes(sql)) for name, sql in sqlite.items()),
        ("pgmigrations/", pg_trigger_writes(pg)),
    ]:
        for trigger, writes in found.items():
            assert not writes or trigger in MEMO_TRIGGERS, f"{where}: trigger {trigger} writes {sorted(writes)}"
    # Both backends have exactly the accounted ones (a renamed or dropped trigger is accounted again).
    in_sqlite = {t for sql in sqlite.values() for t, writes in sqlite_trigger_writes(sql).items() if writes}
    in_pg = {t for t, writes in pg_trigger_writes(pg).items() if writes}
    assert in_sqlite == in_pg == set(MEMO_TRIGGERS), (sorted(in_sqlite), sorted(in_pg))


def test_the_trigger_readers_see_a_planted_trigger() -> None:
    """The readers above are what the accounting rests on: each finds a stray write to a memoised table."""
    sqlite = "CREATE TRIGGER stray AFTER INSERT ON seats BEGIN UPDATE consumption_counters SET revision = 0; END;"
    assert sqlite_trigger_writes(sqlite) == {"stray": {"consumption_counters"}}
    pg = """
CREATE FUNCTION helper() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN DELETE FROM ONLY public.license_addons WHERE true; END; $body$;
CREATE OR REPLACE FUNCTION stray_fn() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO usage_events (event_id) VALUES (NEW.id);
    PERFORM helper();
    RETURN NULL;
END;
$$;
CREATE TRIGGER stray AFTER INSERT ON seats FOR EACH ROW EXECUTE FUNCTION stray_fn();
CREATE FUNCTION loose() RETURNS void LANGUAGE sql AS $$ UPDATE "addons" SET name = name $$;
CREATE TRIGGER harmless AFTER INSERT ON seats FOR EACH ROW EXECUTE FUNCTION floatsrv_refuse('no');
"""
    assert pg_trigger_writes(pg) == {
        "stray": {"usage_events", "license_addons"},
        "harmless": set(),
        "function helper()": {"license_addons"},
        "function loose()": {"addons"},
    }


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


# --- caches and state: each has one owner (docs/architecture.md, Caches); none hides at module level ---

# Process-wide caches and state, and the file that documents each (it must name it there, as `module.name`):
# anything else found below fails the test. The owner of everything else is an object (docs/architecture.md).
PROCESS_WIDE = {
    "auth.passwords.dummy_hash": "docs/architecture.md",
    "procid.boot_id": "docs/architecture.md",
    "log._timestamp": "docs/architecture.md",
    "log._sink": "docs/architecture.md",
    "log._request_lines_direct": "docs/architecture.md",
}
_CACHING = {"cache", "lru_cache"}
_CONTAINERS = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque", "Counter", "bytearray",
               "WeakValueDictionary", "WeakKeyDictionary", "WeakSet", "ChainMap"}  # fmt: skip
_MUTATORS = {"append", "add", "update", "setdefault", "pop", "popitem", "clear", "extend", "insert", "remove",
             "discard", "appendleft", "extendleft", "__setitem__", "__delitem__", "sort", "reverse",
             "difference_update", "intersection_update", "symmetric_difference_update"}  # fmt: skip


def _is_container(value: ast.expr | None) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")) in _CONTAINERS
    return False


def _mutated(node: ast.AST) -> ast.expr | None:
    """The object `node` changes in place (`x[k] = v`, `del x[k]`, `x[k] += 1`, `x.append(v)`, `x |= y`)."""
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for target in (t for top in targets for t in ast.walk(top)):
            if isinstance(target, ast.Subscript) and not isinstance(target.ctx, ast.Load):
                return target.value
        if isinstance(node, ast.AugAssign):
            return node.target
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
        return node.func.value
    return None


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]


def _root(node: ast.expr) -> ast.expr:
    """`x` of `x.a[k].b`."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def _changes_itself(cls: ast.ClassDef) -> bool:
    """Whether a method of `cls` other than `__init__` assigns or changes an attribute of `self`."""
    for method in _functions(cls):
        if getattr(method, "name", "") in ("__init__", "__post_init__", "__new__"):
            continue
        for node in ast.walk(method):
            changed: list[ast.expr] = [
                n for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
            ]
            if (target := _mutated(node)) is not None:
                changed.append(target)
            if any(isinstance(_root(t), ast.Name) and getattr(_root(t), "id", "") == "self" for t in changed):
                return True
    return False


def _cached_functions(module: str, tree: ast.Module) -> set[str]:
    """`module.name` of each function cached by functools (decorated, or `name = functools.cache(f)`)."""
    tools = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
             if a.name == "functools"}  # fmt: skip
    cachers = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and n.module == "functools" for a in n.names if a.name in _CACHING}  # fmt: skip
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id in cachers) or (
            isinstance(node, ast.Attribute) and node.attr in _CACHING and ast.unparse(node.value) in tools
        ):
            owner: ast.AST | None = node
            while owner is not None and not isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Assign)):
                owner = parents.get(id(owner))
            if isinstance(owner, ast.Assign):
                found.add(f"{module}.{ast.unparse(owner.targets[0])}")
            else:
                found.add(f"{module}.{getattr(owner, 'name', '?')}")
    return found


def module_state(sources: dict[str, str]) -> dict[str, str]:
    """`module.name` -> what it is, for every process-wide cache or state in these modules (dotted name ->
    source): functions cached by functools (`@cache`, `@lru_cache(...)`, `functools.cache(f)`), module-level
    containers changed in place by a function (of any module), module names a function rebinds (`global`),
    and module-level instances of classes whose methods change the instance after `__init__`."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    stateful = {c.name for tree in trees.values() for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                and _changes_itself(c)}  # fmt: skip
    found: dict[str, str] = {}
    containers: set[str] = set()  # "module.name" of module-level containers
    for module, tree in trees.items():
        found.update(dict.fromkeys(_cached_functions(module, tree), "a function cached by functools"))
        for statement in tree.body:
            if not isinstance(statement, (ast.Assign, ast.AnnAssign)):
                continue
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for name in (f"{module}.{t.id}" for t in targets if isinstance(t, ast.Name)):
                value = statement.value
                if _is_container(value):
                    containers.add(name)
                elif isinstance(value, ast.Call) and ast.unparse(value.func).rpartition(".")[2] in stateful:
                    found[name] = "a module-level object that changes itself"
        for node in (n for function in _functions(tree) for n in ast.walk(function)):
            if isinstance(node, ast.Global):
                found.update({f"{module}.{name}": "a module name rebound by a function" for name in node.names})
    for module, tree in trees.items():  # containers changed by a function: of this module, or imported
        imported = {a.asname or a.name: f"{n.module.removeprefix('floatsrv.')}.{a.name}" for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module for a in n.names}  # fmt: skip
        for node in (n for function in _functions(tree) for n in ast.walk(function)):
            if (changed := _mutated(node)) is None:
                continue
            text = ast.unparse(changed)
            for candidate in (f"{module}.{text}", imported.get(text, ""), text.removeprefix("floatsrv.")):
                if candidate in containers:
                    found[candidate] = "a module-level container changed by a function"
    return found


def _package_sources() -> dict[str, str]:
    return {_module_name(path).removeprefix("floatsrv.").removeprefix("floatsrv"): path.read_text()
            for path in modules()}  # fmt: skip


def test_no_module_level_caches_but_the_documented_ones() -> None:
    found = module_state(_package_sources())
    stray = {name: kind for name, kind in found.items() if name not in PROCESS_WIDE}
    assert not stray, (
        f"module-level caches or state: {stray}. Give each an owner object (an AppKey, the Domain, the Store) "
        "and a row in docs/architecture.md's Caches table; or, if it is truly the process's, add it there with "
        "owner 'process' and to PROCESS_WIDE here"
    )
    assert set(PROCESS_WIDE) <= set(found), f"no longer found, drop from PROCESS_WIDE: {set(PROCESS_WIDE) - set(found)}"
    for name, document in PROCESS_WIDE.items():
        assert f"`{name}`" in (PACKAGE.parent / document).read_text(), f"{document} does not document `{name}`"


def test_the_cache_finder_sees_a_planted_cache() -> None:
    """The finder above is what the rule rests on: each way of keeping a cache at module level is seen."""
    planted = {
        "a": "import functools\n@functools.lru_cache(maxsize=8)\ndef f(x: int) -> int:\n    return x\n",
        "b": "from functools import cache as keep\nclass C:\n    @keep\n    def g(self) -> int:\n        return 1\n",
        "c": "import functools as ft\nh = ft.cache(len)\n_SEEN: dict[str, int] = {}\ndef k(x: str) -> None:\n"
        "    _SEEN[x] = 1\n",
        "d": "from c import _SEEN\nrows = []\ndef m() -> None:\n    _SEEN.setdefault('x', 2)\n    rows.append(1)\n",
        "e": "_last = None\ndef n() -> None:\n    global _last\n    _last = 1\n",
        "f": "class T:\n    def __call__(self) -> None:\n        self.n = 1\nT_ = T()\nTABLE = {'a': 1}\n",
    }
    assert module_state(planted) == {
        "a.f": "a function cached by functools",
        "b.g": "a function cached by functools",
        "c.h": "a function cached by functools",
        "c._SEEN": "a module-level container changed by a function",
        "d.rows": "a module-level container changed by a function",
        "e._last": "a module name rebound by a function",
        "f.T_": "a module-level object that changes itself",
    }
