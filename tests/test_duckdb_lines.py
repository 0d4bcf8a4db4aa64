"""One code base on both DuckDB lines: duckdb 1.5.5 (the dev/CI pin, for the extension wheels) and the newest
2.x, which a plain `pip install artifact_bus` resolves. CI runs this file in both environments (`make test`
and `make test-duckdb2`).

On 2.x a relation has no fetchone(), and a `con.execute()` result that is not fetched to its end blocks the
connection's relations (`con.sql`, `register`) with "unfinished result". So the face is run here as a user runs
it, on a real bus with an accepted run, a rejection and exports: `status`, `doctor` and `catalog` as processes,
and every browser helper that takes the caller's connection must leave that connection usable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from helpers import HANG_GUARD, clean_env

from artifact_bus import catalog, ingest, submit
from artifact_bus.catalog_db import catalog_version
from artifact_bus.core import load_config
from artifact_bus.testing import submit_backtest

LINE = f"duckdb {duckdb.__version__}"


@pytest.fixture
def bus(root) -> Path:
    "Two backtest runs (four jobs) accepted, one `signals` job rejected by its contract, exports generated."
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "signals.toml").write_text('[columns]\nscore = "int32"\n')
    submit_backtest(root, runs=2)
    submit(pa.table({"score": pa.array([1, 2], pa.int16())}), "signals", run_id="sim-009", root=root)
    rep = ingest(root)
    assert (len(rep.accepted), len(rep.rejected)) == (4, 1), rep
    return root


def bus_cli(root, *args) -> subprocess.CompletedProcess:
    "`artifact-bus ARGS --root ROOT`, the installed console script of this environment, as a real process."
    p = subprocess.run(
        [str(Path(sys.executable).parent / "artifact-bus"), *args, "--root", str(root)],
        cwd=root.parent,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert "Traceback" not in p.stderr + p.stdout, f"{LINE}: artifact-bus {' '.join(args)}\n{p.stderr}"
    return p


def ok(p) -> str:
    assert p.returncode == 0, f"{LINE}: exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    return p.stdout


def test_status_on_a_real_bus(bus):
    st = json.loads(ok(bus_cli(bus, "status", "--json")))
    assert (st["jobs"], st["rejected"], st["inbox"]["committed"]) == (4, 1, 0), st
    assert (st["last_run"]["outcome"], st["last_run"]["accepted"], st["last_run"]["rejected"]) == ("ok", 4, 1), st
    assert st["exports"] and all(e["status"] == "ok" for e in st["exports"].values()), st["exports"]
    text = ok(bus_cli(bus, "status"))
    assert re.search(r"inbox:\s+0 committed", text) and "4 accepted" in text, text


def test_doctor_on_a_real_bus(bus):
    found = json.loads(ok(bus_cli(bus, "doctor", "--json")))
    by_check = {f["check"]: f for f in found}
    assert by_check["snapshot"]["level"] == "ok", by_check["snapshot"]  # it reads the published snapshot
    assert [f for f in found if f["level"] == "problem"] == [], found
    assert ok(bus_cli(bus, "doctor")).rstrip().endswith("all good")


def test_catalog_on_a_real_bus(bus):
    summary = json.loads(ok(bus_cli(bus, "catalog", "--json")))
    assert {r["kind"]: r["jobs"] for r in summary["kinds"]} == {"events": 2, "features": 2, "fills": 2, "positions": 2}
    assert {r["status"]: r["jobs"] for r in summary["jobs"]}["accepted"] == 4, summary["jobs"]
    assert sum(r["jobs"] for r in summary["rejections"]) == 1, summary["rejections"]
    text = ok(bus_cli(bus, "catalog"))
    assert text.startswith("kinds:") and "positions" in text and "rejections:" in text, text
    sql = "SELECT _run_id, count(*) AS n FROM bus.fills GROUP BY ALL ORDER BY 1"
    with catalog(bus) as con:
        want = con.execute(sql).fetchall()
    got = json.loads(ok(bus_cli(bus, "catalog", sql, "--json")))
    assert (got["columns"], [tuple(r.values()) for r in got["rows"]]) == (["_run_id", "n"], want)
    text = ok(bus_cli(bus, "catalog", sql))
    assert all(run in text for run, _ in want), text


def test_catalog_query_that_fails_while_running_is_one_error_line(bus):
    "The cast binds and fails only when the query runs (on 2.x a relation runs lazily, at the first fetch)."
    p = bus_cli(bus, "catalog", "SELECT _run_id::INTEGER FROM bus.fills")
    assert p.returncode != 0 and p.stderr.startswith("error: query failed") and len(p.stderr.splitlines()) == 1, (
        f"{LINE}\n{p.stdout}\n{p.stderr}"
    )
    p = bus_cli(bus, "catalog", "SELECT _run_id::INTEGER FROM bus.fills", "--json")  # under --json: one JSON object
    err = json.loads(p.stderr)
    assert p.returncode == err["exit_code"] != 0 and err["error"].startswith("query failed"), f"{LINE}\n{p.stderr}"


def test_helpers_leave_the_callers_connection_usable(bus):
    "On 2.x a result left half-read would make the caller's next `con.sql()` fail with 'unfinished result'."
    from artifact_bus import browse

    cfg = load_config(bus)
    with catalog(bus) as con:
        job, name = con.execute(
            "SELECT job_id, name FROM catalog.artifacts WHERE kind = 'fills' ORDER BY job_id LIMIT 1"
        ).fetchall()[0]
        calls = {
            "catalog()": lambda: None,
            "catalog_version": lambda: catalog_version(con),
            "list_artifacts": lambda: browse.list_artifacts(con),
            "filter_options": lambda: browse.filter_options(con),
            "artifact_detail": lambda: browse.artifact_detail(con, job, name),
            "preview": lambda: browse.preview(con, cfg, job, name),
            "rejections_frame": lambda: browse.rejections_frame(con),
        }
        for what, call in calls.items():
            call()
            try:
                con.sql("SELECT count(*) FROM catalog.jobs").fetchall()
            except duckdb.Error as e:
                pytest.fail(f"{LINE}: {what} left the connection busy: {e}")


@pytest.mark.skipif(duckdb.__version__.startswith("1."), reason="the extension wheels exist for this duckdb line")
def test_on_duckdb2_a_missing_lake_extension_names_the_duckdb_its_wheels_need():
    """No `pip install duckdb-extension-ducklake==2.x`: no such wheel exists; the `scale` extra brings duckdb 1.5.5 and
    them."""
    from artifact_bus.core import BusError
    from artifact_bus.lake import WHEELS_DUCKDB, _duckdb, load_extensions

    with _duckdb() as con, pytest.raises(BusError) as e:
        load_extensions(con, ["ducklake"])
    assert (
        f"exists for duckdb {WHEELS_DUCKDB} only (this is duckdb {duckdb.__version__}): pip install "
        f"'artifact_bus[scale]'" in str(e.value)
    ), str(e.value)
