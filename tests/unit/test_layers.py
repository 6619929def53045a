"""The architecture, checked: the functional core (relay/core) imports nothing that does I/O or
holds state of the running relay, and no shell folder reaches into another's insides without going
through the core or the store. Read from the source with `ast`, so nothing has to be imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

RELAY = Path(__file__).resolve().parents[2] / "relay"

# what the core must never import: the shells, the wiring, the log writer, and libraries that talk
# to the outside (network, database, scheduler)
FORBIDDEN_IN_CORE = ("relay.inbound", "relay.outbound", "relay.lifecycle", "relay.admin", "relay.store",
                     "relay.api", "relay.app", "relay.config", "relay.logs", "relay.metrics", "relay.server",
                     "relay.libc", "peewee", "playhouse", "psycopg2", "aiosmtpd", "aiosmtplib", "schedule",
                     "fastapi", "starlette", "uvicorn", "prometheus_client", "httpx", "asyncio", "socket",
                     "subprocess", "threading", "sqlite3", "smtplib")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, relative ones made absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(RELAY.parent).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(RELAY.parent)}:{line} imports {module}")
    return out


def test_the_core_imports_no_shell_and_no_io() -> None:
    assert violations(RELAY / "core", FORBIDDEN_IN_CORE) == []


def test_the_core_never_reads_the_clock() -> None:
    """Time is passed in (a Clock, or `now`): no call to the system's clock anywhere in the core."""
    reads = []
    for path in sorted((RELAY / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("now", "utcnow", "today", "time", "monotonic", "perf_counter"):
                reads.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}()")
    assert reads == []


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    """The rule can fail: a core module that imports peewee, a shell, or the system clock is named."""
    core = tmp_path / "relay" / "core"
    core.mkdir(parents=True)
    (core / "bad.py").write_text("import peewee\nfrom ..store import models\nfrom relay.app import SystemClock\n")
    global RELAY
    saved, RELAY = RELAY, tmp_path / "relay"
    try:
        found = violations(core, FORBIDDEN_IN_CORE)
    finally:
        RELAY = saved
    assert [f.split(" imports ")[1] for f in found] == ["peewee", "relay.store.models", "relay.store",
                                                        "relay.app.SystemClock", "relay.app"]


def test_module_names_are_unique_across_folders() -> None:
    names: dict[str, list[str]] = {}
    for path in RELAY.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            names.setdefault(path.stem, []).append(str(path.relative_to(RELAY)))
    assert {name: where for name, where in names.items() if len(where) > 1} == {}


def test_settings_are_read_as_typed_attributes() -> None:
    """`settings.inbound.port`, never `settings["inbound"]["port"]`: a typo is a type error, not a
    KeyError at run time."""
    subscripts = [f"{path.relative_to(RELAY.parent)}:{n}" for path in sorted(RELAY.rglob("*.py"))
                  for n, line in enumerate(path.read_text().splitlines(), 1) if "settings[" in line]
    assert subscripts == []


def test_every_event_is_explained_in_the_operations_guide() -> None:
    """One registry of event names (relay.core.vocabulary.Event), and every one of them in the
    table admins read; no name in the table that the relay never writes."""
    from relay.core.vocabulary import Event

    guide = (RELAY.parent / "docs" / "operations.md").read_text()
    table = guide.split("### Events", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"`([a-z]+\.[a-z_]+)`", table))
    assert {e.value for e in Event} - documented == set()
    assert documented - {e.value for e in Event} == set()


def test_events_are_named_from_the_registry() -> None:
    """No event name written as a bare string where events are recorded or logged."""
    bare = []
    for path in sorted(RELAY.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(logs\.event|record_events?)\([^)]*?\"[a-z]+\.[a-z_]+\"", line):
                bare.append(f"{path.relative_to(RELAY.parent)}:{n}")
    assert bare == []


def test_only_the_store_talks_to_the_database() -> None:
    """Nothing outside relay/store imports the database layer (peewee, the models): every write
    goes through a store function, every transaction through relay.store.events.transaction."""
    outside = [RELAY / name for name in ("core", "inbound", "outbound", "lifecycle", "admin")]
    outside += [path for path in RELAY.glob("*.py")]
    found = []
    for place in outside:
        for path in ([place] if place.is_file() else sorted(place.rglob("*.py"))):
            for line, module in imports(path):
                if module.split(".")[0] in ("peewee", "playhouse", "psycopg2") or module.startswith("relay.store.models"):
                    found.append(f"{path.relative_to(RELAY.parent)}:{line} imports {module}")
    assert found == []


def test_unit_tests_need_no_server_and_no_database() -> None:
    """tests/unit exercises the core alone: no shell module, no database or server fixture."""
    shells = ("relay.inbound", "relay.outbound", "relay.lifecycle", "relay.admin", "relay.store", "relay.app",
              "relay.server", "peewee", "psycopg2", "aiosmtpd", "aiosmtplib", "smtplib")
    units = RELAY.parent / "tests" / "unit"
    found = []
    for path in sorted(units.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if any(n == s or n.startswith(s + ".") for s in shells)]
            if isinstance(node, ast.FunctionDef):
                fixtures = {a.arg for a in node.args.args} & {"db_url", "app_factory", "sink", "relay_factory"}
                found += [f"{path.name}: {node.name} uses {f}" for f in sorted(fixtures)]
    assert found == []


def test_lower_shells_do_not_reach_up() -> None:
    """The store serves every shell and the outbound side is used by the lifecycle jobs and the
    inbound intake: neither imports the shells that use it (no arrow runs back up)."""
    upper = ("relay.inbound", "relay.lifecycle", "relay.admin", "relay.api", "relay.server")
    assert violations(RELAY / "outbound", upper) == []
    assert violations(RELAY / "store", ("relay.outbound", *upper)) == []
