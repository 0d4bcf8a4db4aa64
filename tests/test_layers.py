"""The layers, as written in the source: every module of the package has a layer, and imports (at module level or
inside a function, also under `if TYPE_CHECKING`) only what its layer may.

core -> protocol -> three sides (producer, reader, writer) -> face. A side imports core, protocol and its own side;
only the face calls across sides. DuckDB stays off the producer's path (core, protocol, producer), and ipywidgets
belongs to the face. `docs/explanation/architecture.md` shows the same table; `tests/test_layers_import.py` checks
what an import really loads.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(importlib.util.find_spec("artifact_bus").origin).parent

# The one list of the layers: a module missing here (a new one) fails `test_every_module_has_a_layer`.
LAYERS = {
    "core": "core",
    "_modidx": "core",  # _modidx: nbdev's index of the notebooks, data only
    "protocol": "protocol",
    "contracts": "protocol",
    "objstore": "protocol",
    "submit": "producer",
    "producers": "producer",
    "clickhouse": "producer",
    "upload": "producer",
    "catalog": "reader",
    "reader": "reader",
    "producer_views": "reader",
    "catalog_db": "writer",
    "inbox": "writer",
    "ingest": "writer",
    "checks": "writer",
    "landing": "writer",
    "requeue": "writer",
    "snapshots": "writer",
    "retire": "writer",
    "gc": "writer",
    "quarantine": "writer",
    "export": "writer",
    "export_parts": "writer",
    "compact": "writer",
    "lake": "writer",
    "pull": "writer",
    "__init__": "face",
    "__main__": "face",
    "cli": "face",
    "schedule": "face",
    "browse": "face",
    "health": "face",
    "testing": "face",
    "scan": "face",
}
# the layers each layer may import from, its own included
MAY_IMPORT = {
    "core": {"core"},
    "protocol": {"core", "protocol"},
    "producer": {"core", "protocol", "producer"},
    "reader": {"core", "protocol", "reader"},
    "writer": {"core", "protocol", "writer"},
    "face": {"core", "protocol", "producer", "reader", "writer", "face"},
}
# third-party packages kept out of some layers
FORBIDDEN = {
    "duckdb": {"core", "protocol", "producer"},
    "ipywidgets": {"core", "protocol", "producer", "reader", "writer"},
}


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every import in `tree`, anywhere in it, as (line, absolute dotted name); a package's own module as
    `artifact_bus.x`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["artifact_bus"] + ([base] if base else []))
            if (
                base == "artifact_bus"
            ):  # `from artifact_bus import lake` or `from . import lake`: a module, or a name of __init__
                out += [
                    (node.lineno, f"artifact_bus.{a.name}" if a.name in LAYERS else "artifact_bus.__init__")
                    for a in node.names
                ]
            else:
                out.append((node.lineno, base))
    return out


def crossings(source: str, module: str) -> list[str]:
    "What the module `module` (a key of LAYERS) with this source imports against its layer, one line each."
    layer = LAYERS[module]
    bad = []
    for line, name in imported(ast.parse(source)):
        top, _, rest = name.partition(".")
        if top == "artifact_bus":
            dep = rest.split(".")[0] or "__init__"
            if dep not in LAYERS:
                bad.append(f"{module}.py:{line}: imports artifact_bus.{dep}, which has no layer")
            elif LAYERS[dep] not in MAY_IMPORT[layer]:
                bad.append(f"{module}.py:{line}: {layer} module imports artifact_bus.{dep} ({LAYERS[dep]})")
        elif layer in FORBIDDEN.get(top, ()):
            bad.append(f"{module}.py:{line}: {layer} module imports {top}")
    return bad


def module_imports(source: str, module: str) -> set[str]:
    "The package's modules that the module `module` with this source imports, anywhere in it."
    deps = set()
    for _, name in imported(ast.parse(source)):
        top, _, rest = name.partition(".")
        if top == "artifact_bus" and (dep := rest.split(".")[0] or "__init__") != module:
            deps.add(dep)
    return deps


def circles(graph: dict[str, set[str]]) -> list[str]:
    "Each import circle in `graph` (module -> the modules it imports), once, as `a -> b -> a`."
    out = set()
    for start in graph:
        paths, seen = [[start]], {start}
        while paths:  # breadth first: the shortest way back to `start`
            path = paths.pop(0)
            for nxt in sorted(graph.get(path[-1], ())):
                if nxt == start:
                    i = path.index(min(path))  # the same circle, whichever module it was found from
                    out.add(" -> ".join(path[i:] + path[:i] + [path[i]]))
                elif nxt not in seen:
                    seen.add(nxt)
                    paths.append(path + [nxt])
    return sorted(out)


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert not modules - set(LAYERS), f"modules with no layer (add them to LAYERS): {sorted(modules - set(LAYERS))}"
    assert not set(LAYERS) - modules, f"LAYERS lists modules that do not exist: {sorted(set(LAYERS) - modules)}"


def test_no_module_crosses_its_layer():
    bad = [b for p in sorted(PACKAGE.glob("*.py")) for b in crossings(p.read_text(), p.stem)]
    assert not bad, "layer crossings:\n" + "\n".join(bad)


def test_no_import_circle():
    # a module never imports, even inside a function or for types only, a module that imports it back: the
    # layout owners (quarantine, inbox) stay below the run that uses them (ingest, requeue)
    graph = {p.stem: module_imports(p.read_text(), p.stem) for p in PACKAGE.glob("*.py")}
    assert not circles(graph), "import circles:\n" + "\n".join(circles(graph))


def test_the_check_finds_a_circle():
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from artifact_bus.ingest import Report\n"
    assert module_imports(src, "quarantine") == {"ingest"}
    graph = {"quarantine": {"core", "ingest"}, "ingest": {"core", "landing"}, "landing": {"quarantine"}, "core": set()}
    assert circles(graph) == ["ingest -> landing -> quarantine -> ingest"]
    assert circles({**graph, "quarantine": {"core"}}) == []


@pytest.mark.parametrize(
    "module, source, expected",
    [
        (
            "producers",
            "def f():\n    from artifact_bus.ingest import ingest\n",
            "producers.py:2: producer module imports artifact_bus.ingest (writer)",
        ),
        ("upload", "import duckdb\n", "upload.py:1: producer module imports duckdb"),
        (
            "reader",
            "from .catalog_db import publish\n",
            "reader.py:1: reader module imports artifact_bus.catalog_db (writer)",
        ),
        ("reader", "from . import pull\n", "reader.py:1: reader module imports artifact_bus.pull (writer)"),
        ("catalog", "import ipywidgets as w\n", "catalog.py:1: reader module imports ipywidgets"),
        (
            "core",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from artifact_bus.submit import Job\n",
            "core.py:3: core module imports artifact_bus.submit (producer)",
        ),
        (
            "ingest",
            "from artifact_bus.producer_views import coverage\n",
            "ingest.py:1: writer module imports artifact_bus.producer_views (reader)",
        ),
        (
            "pull",
            "from artifact_bus.newthing import x\n",
            "pull.py:1: imports artifact_bus.newthing, which has no layer",
        ),
    ],
)
def test_the_check_catches_a_crossing(module, source, expected):
    assert crossings(source, module) == [expected]


def test_the_check_lets_allowed_imports_through():
    assert (
        crossings("import duckdb\nfrom .catalog import catalog\nfrom artifact_bus.core import sql_str\n", "reader")
        == []
    )
    assert (
        crossings(
            "def f():\n    from artifact_bus.ingest import ingest\n    from artifact_bus.submit import job\n", "cli"
        )
        == []
    )
    assert crossings("from .objstore import CHUNK\nfrom .protocol import COMMIT\n", "pull") == []


def test_the_real_package_would_fail_with_a_crossing():
    # the check reads the real sources: the same source with one added import fails
    src = (PACKAGE / "producer_views.py").read_text()
    assert crossings(src, "producer_views") == []
    assert crossings(src + "\ndef _f():\n    from artifact_bus.producers import to_utc\n", "producer_views")
