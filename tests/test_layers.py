"""The layering holds (docs/development.md): transport -> domain -> store, one direction.

- the domain imports no gRPC, protobuf, generated code or transport: it is the service's rules
  alone, callable from any transport and from tests without one;
- of the store, the domain imports only its contract (server/store/contract.py: the Store protocol, its
  records and errors), never how a backend keeps things;
- the store imports no domain and no transport;
- the events (server/events/), which the domain and the store both speak, import neither, nor the
  transports;
- no module of server/ imports, at its top, a module that imports it back (no circles).

Read from the sources' import statements: imports inside functions (made when called) count for
the first two rules, not for circles.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

SERVER = Path(__file__).resolve().parent.parent / "server"
# What the domain must not lean on: the wire and its libraries.
NOT_FOR_THE_DOMAIN = ("grpc", "grpc_status", "google", "machinesecrets", "zitadel", "server.transport",
                      "uvicorn", "h11", "sonora")  # fmt: skip
NOT_FOR_THE_STORE = ("server.domain", "server.transport")
NOT_FOR_THE_EVENTS = ("server.domain", "server.store", "server.transport")
STORE_CONTRACT = "server.store.contract"


def modules() -> dict[str, Path]:
    found = {}
    for path in SERVER.rglob("*.py"):
        parts = path.relative_to(SERVER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()


def imports(path: Path, top_level_only: bool) -> Iterator[str]:
    """The modules a file imports (for `from package import name`, package.name when that is a
    module of server/, else package)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            inner = [name for name in names if name in MODULES]
            yield from inner or [node.module]


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def breaches(layer: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    return sorted(
        (module, imported)
        for module, path in MODULES.items()
        if within(module, (layer,))
        for imported in imports(path, top_level_only=False)
        if within(imported, forbidden)
    )


def test_the_domain_imports_nothing_of_the_wire() -> None:
    assert breaches("server.domain", NOT_FOR_THE_DOMAIN) == []


def test_the_domain_imports_only_the_stores_contract() -> None:
    assert [(m, i) for m, i in breaches("server.domain", ("server.store",)) if i != STORE_CONTRACT] == []


def test_the_events_import_neither_the_domain_nor_the_store_nor_the_transports() -> None:
    assert breaches("server.events", NOT_FOR_THE_EVENTS) == []


def test_what_sits_beside_the_layers_imports_none_of_them() -> None:
    """The modules both the domain and the store import (the clock, the limits, user names)."""
    for beside in ("server.clock", "server.limits", "server.user_names"):
        assert breaches(beside, (*NOT_FOR_THE_EVENTS, "server.events")) == []


def test_the_store_imports_neither_the_domain_nor_the_transports() -> None:
    assert breaches("server.store", NOT_FOR_THE_STORE) == []


def test_no_module_imports_itself_back() -> None:
    graph = {
        module: {i for i in imports(path, top_level_only=True) if i in MODULES and i != module}
        for module, path in MODULES.items()
    }
    circles = []
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            circles.append([*trail[trail.index(module) :], module])
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert circles == []


def test_the_rules_see_a_breach() -> None:
    """The checks read real imports: the transports do import gRPC, and a package's __init__
    counts as the package."""
    assert breaches("server.transport", ("grpc",))
    assert ("server.store.sql", "server.store.records") in breaches("server.store", ("server.store.records",))
    assert "server.domain" in MODULES
    assert "server.transport.pipeline" in MODULES
