"""The layers, as seen by `sys.modules`: what a fresh interpreter holds after an import.

Contract: `from artifact_bus import submit, job, batch` loads the producer side only (`artifact_bus.core`,
`.protocol`, `.submit`) and no third-party package that `import pyarrow.parquet` does not load already (numpy
only where pyarrow itself loads it): no duckdb, no writer or reader module, not even fastjsonschema (only the
writer validates manifests). Every name in `artifact_bus.__all__` resolves. `submit`, `ingest`, `catalog`,
`export`, `requeue`, `retire` and `gc` are the API functions on the package, whichever of the function or the
module of the same name was imported first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import HANG_GUARD, clean_env
from test_layers import LAYERS

PRODUCER_MODULES = {"artifact_bus", "artifact_bus.core", "artifact_bus.protocol", "artifact_bus.submit"}


def _modules_after(code: str) -> set[str]:
    "The names in `sys.modules` of a fresh interpreter after running `code`."
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _top(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


@pytest.fixture(scope="module")
def floor() -> set[str]:
    return _modules_after("import pyarrow.parquet")


@pytest.mark.parametrize("names", ["submit", "submit, job, batch", "job", "batch, flush, Receipt, SpooledWarning"])
def test_producer_import_stays_on_the_producer_side(names, floor):
    mods = _modules_after(f"from artifact_bus import {names}")
    ours = {m for m in mods if _top({m}) == {"artifact_bus"}}
    assert ours == PRODUCER_MODULES, f"`from artifact_bus import {names}` loaded {sorted(ours - PRODUCER_MODULES)}"
    assert "duckdb" not in _top(mods)
    extra = _top(mods) - _top(floor) - {"artifact_bus"} - set(sys.stdlib_module_names)
    assert not extra, f"`from artifact_bus import {names}` imports more than pyarrow.parquet: {sorted(extra)}"


def test_numpy_only_if_pyarrow_loads_it(floor):
    # pyarrow imports numpy itself when numpy is installed; the producer must not add it otherwise
    mods = _modules_after("from artifact_bus import submit, job, batch")
    assert ("numpy" in mods) == ("numpy" in floor)


def test_bare_package_import_is_empty():
    mods = _modules_after("import artifact_bus")
    assert {m for m in mods if m.startswith("artifact_bus")} == {"artifact_bus"}
    assert "pyarrow" not in _top(mods) and "duckdb" not in _top(mods)


def test_reader_import_leaves_out_the_writer():
    mods = _modules_after("from artifact_bus import catalog")
    # every module outside core, protocol and the readers' side (the layers are listed in test_layers.py)
    others = {f"artifact_bus.{m}" for m, layer in LAYERS.items() if layer not in ("core", "protocol", "reader")} - {
        "artifact_bus.__init__"
    }
    assert "artifact_bus.catalog_db" in others and "artifact_bus.pull" in others
    assert not mods & others, sorted(mods & others)


def test_every_public_name_resolves():
    code = textwrap.dedent("""
        import artifact_bus
        from artifact_bus import *
        missing = [n for n in artifact_bus.__all__ if n not in globals()]
        assert not missing, missing
        assert set(artifact_bus.__all__) <= set(dir(artifact_bus))
        try:
            artifact_bus.no_such_name
        except AttributeError as e:
            assert "no_such_name" in str(e)
        else:
            raise AssertionError("an unknown name resolved")
        print("ok")
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("name", ["submit", "ingest", "catalog", "export", "requeue", "retire", "gc"])
@pytest.mark.parametrize(
    "first",
    [
        "import artifact_bus.{n}",
        "from artifact_bus.{n} import {n} as _f",
        "import importlib; importlib.import_module('artifact_bus.{n}')",
        "from artifact_bus import {n} as _f",
    ],
)
def test_function_keeps_its_name_whichever_import_came_first(name, first):
    # the module of the same name imported before or after must not turn the package attribute into a module
    code = textwrap.dedent(f"""
        import importlib, sys, types
        {first.format(n=name)}
        import artifact_bus
        from artifact_bus import {name} as f
        mod = importlib.import_module("artifact_bus.{name}")
        assert isinstance(mod, types.ModuleType) and sys.modules["artifact_bus.{name}"] is mod
        assert f is mod.{name} and artifact_bus.{name} is mod.{name}, (f, artifact_bus.{name})
        assert callable(artifact_bus.{name}) and not isinstance(artifact_bus.{name}, types.ModuleType)
        print("ok")
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_round_trip_through_the_package_after_the_modules_were_imported(tmp_path):
    # real calls through the package's names once every same-named module has been imported by its path
    code = textwrap.dedent(f"""
        import artifact_bus.submit, artifact_bus.ingest, artifact_bus.catalog, artifact_bus.export
        import pyarrow as pa
        root = {str(tmp_path / "bus")!r}
        artifact_bus.submit(pa.table({{"x": [1, 2, 3]}}), "points", root=root)
        assert len(artifact_bus.ingest(root).accepted) == 1
        with artifact_bus.catalog(root) as con:
            print(con.execute("select sum(x) from bus.points").fetchone()[0])
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert out.returncode == 0 and out.stdout.strip() == "6", out.stderr


def test_type_checking_imports_match_the_lazy_table():
    # the imports for type checkers (which the docs' API index also reads) and the names loaded on first use agree
    import ast
    from pathlib import Path

    import artifact_bus

    tree = ast.parse(Path(artifact_bus.__file__).read_text())
    static = {
        a.name: node.module.removeprefix("artifact_bus.")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("artifact_bus.")
        for a in node.names
    }
    assert static == artifact_bus._API
