"""`artifact-bus scan` as a real process over a tree of a research team's producers (tests/fixtures/scan).

The fixture files are data: they are never imported or run (pytest does not collect them: `fixtures`
is not a test folder, and no fixture file is named test_*). The lines that write to a database file
are marked `WRITES` in the files themselves; the test holds the scan to exactly that set.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "scan"
# the notebook's write is in its third cell (JSON has no room for a marker comment)
NOTEBOOK_WRITES = {"notebooks/explore.ipynb:cell_3:3"}


def bus_scan(*args, cwd=None):
    exe = Path(sys.executable).parent / "artifact-bus"
    return subprocess.run(
        [str(exe), "scan", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=clean_env(), timeout=120
    )


def marked() -> set[str]:
    "path:line of every line marked WRITES in the fixture files."
    out = set(NOTEBOOK_WRITES)
    for f in FIXTURES.rglob("*"):
        if f.suffix in (".py", ".ts", ".js", ".mjs"):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if re.search(r"(#|//) WRITES\b", line):
                    out.add(f"{f.relative_to(FIXTURES)}:{i}")
    return out


def test_scan_reports_exactly_the_direct_writers(tmp_path):
    pytest.importorskip(
        "tree_sitter_typescript", reason="the scan extra is not installed (pip install 'artifact_bus[scan]')"
    )
    p = bus_scan(".", cwd=FIXTURES)
    assert p.returncode == 1, p.stderr
    lines = [l for l in p.stdout.splitlines() if re.match(r"\S+:\d+: ", l)]
    found = {re.match(r"(\S+?:(?:cell_\d+:)?\d+): ", l).group(1) for l in lines}
    assert found == marked(), (found, marked())
    assert len(lines) == len(found) == 11
    assert p.stdout.splitlines()[-1] == "scanned 10 file(s): 11 direct DuckDB write(s) in 6 file(s)"
    assert (
        p.stderr.startswith("error: scanned 10 file(s): 11 direct DuckDB write(s)") and len(p.stderr.splitlines()) == 1
    )
    # each finding names the bus call that replaces it
    by_where = {re.match(r"(\S+?:(?:cell_\d+:)?\d+): ", l).group(1): l for l in lines}
    assert by_where["backtest/run_backtest.py:16"].endswith('-> artifact_bus.submit(fills_df, "fills", run_id=...)')
    assert by_where["sim/simulation_writer.ts:14"].endswith(
        '-> submit(rows, { kind: "sim_paths", runId }) from "artifact-bus"'
    )
    assert "key=..., replace=True" in by_where["features/compile_features.py:27"]


def test_scan_json_is_a_list_of_findings():
    pytest.importorskip("tree_sitter_typescript", reason="the scan extra is not installed")
    p = bus_scan(FIXTURES, "--json")
    assert p.returncode == 1
    found = json.loads(p.stdout)
    assert isinstance(found, list) and len(found) == 11
    assert {f"{Path(f['path'].split(':cell_')[0]).relative_to(FIXTURES)}" for f in found} >= {
        "backtest/run_backtest.py",
        "sim/legacy_loader.mjs",
    }
    assert set(found[0]) >= {"path", "line", "what", "replacement", "language", "where"}


def test_clean_tree_exits_zero(tmp_path):
    for name in (
        "notebooks/pnl_report.py",
        "reports/readonly_dashboard.py",
        "scratch/in_memory.py",
        "sim/summarize.js",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / name, tmp_path / name)
    p = bus_scan(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith(": 0 direct DuckDB write(s) in 0 file(s)")
    assert json.loads(bus_scan(tmp_path, "--json").stdout) == []


def test_one_writer_added_to_a_clean_tree_fails_it(tmp_path):
    (tmp_path / "ok.py").write_text("import duckdb\nduckdb.connect('team.duckdb', read_only=True).sql('SELECT 1')\n")
    assert bus_scan(tmp_path).returncode == 0
    (tmp_path / "new_producer.py").write_text(
        "import duckdb\ncon = duckdb.connect('team.duckdb')\ncon.execute('INSERT INTO fills VALUES (1)')\n"
    )
    p = bus_scan(tmp_path)
    assert p.returncode == 1 and p.stdout.startswith(f"{tmp_path / 'new_producer.py'}:3: INSERT INTO fills")


def test_bad_path_is_one_error_line():
    p = bus_scan("no/such/folder")
    assert p.returncode == 7 and p.stderr == "error: no/such/folder: no such file or folder to scan\n"


def test_without_the_extra_python_is_scanned_and_ts_js_skipped_with_a_hint(tmp_path):
    """A Python with the `scan` extra hidden: the TS/JS files are named as skipped, the Python writers still fail the
    run."""
    code = (
        "import sys; sys.modules['tree_sitter'] = None\n"
        "from artifact_bus.cli import main\nsys.exit(main(['scan', sys.argv[1]]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES)], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    assert p.returncode == 1
    assert (
        "warning: 3 TypeScript/JavaScript file(s) not scanned, the parser is missing: pip install 'artifact_bus[scan]'"
        in p.stderr
    )
    assert "scanned 7 file(s): 8 direct DuckDB write(s) in 4 file(s)" in p.stdout
    assert ".ts:" not in p.stdout and ".mjs:" not in p.stdout
