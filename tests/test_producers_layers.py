"""The producer helpers stay on the producers' side: neither `artifact_bus.producers` nor anything it
imports (at module level or inside a function) reaches DuckDB, the writer or the readers; the readers
for what they submit (`artifact_bus.producer_views`) reach no writer module."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(importlib.util.find_spec("artifact_bus").origin).parent
WRITER = {"artifact_bus.ingest", "artifact_bus.export", "artifact_bus.compact", "artifact_bus.quarantine",
          "artifact_bus.schedule", "artifact_bus.lake"}
READERS = {"artifact_bus.catalog", "artifact_bus.producer_views", "artifact_bus.browse", "artifact_bus.health"}


def imports(module: str) -> set[str]:
    "Every module `module`'s source imports, anywhere in it, as absolute names."
    tree = ast.parse((PACKAGE / (module.split(".", 1)[1] + ".py")).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level: base = ".".join(["artifact_bus"] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists() and base == "artifact_bus"}
    return out


def reach(module: str) -> set[str]:
    "The modules `module` imports, transitively through artifact_bus's own modules (its __init__ aside)."
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        for dep in imports(m):
            if dep in seen: continue
            seen.add(dep)
            if dep.startswith("artifact_bus.") and (PACKAGE / (dep.split(".", 1)[1] + ".py")).exists(): todo.append(dep)
    return seen


def test_producers_reach_no_duckdb_writer_or_reader():
    for m in ("artifact_bus.producers", "artifact_bus.clickhouse"):
        got = reach(m)
        assert "artifact_bus.submit" in got   # the walk sees through the package
        assert not {d for d in got if d.split(".")[0] == "duckdb"}, f"{m} reaches duckdb"
        assert not got & (WRITER | READERS), f"{m} reaches {sorted(got & (WRITER | READERS))}"


def test_producer_views_reach_no_writer():
    got = reach("artifact_bus.producer_views")
    assert "artifact_bus.catalog" in got
    assert not got & WRITER, f"producer_views reaches {sorted(got & WRITER)}"


def test_the_walk_finds_a_crossing():
    assert "duckdb" in reach("artifact_bus.catalog") and "artifact_bus.catalog" in reach("artifact_bus.ingest")
