"""The ClickHouse producer against real ClickHouse SQL, run in-process by chdb: what the bus holds after
ingest matches the query, and an export larger than the memory the process may grow by is streamed."""

from __future__ import annotations

import json
import sys

import pytest

chdb = pytest.importorskip("chdb", reason="the `clickhouse` extra (requirements/clickhouse.txt) is not installed")

from artifact_bus import catalog, ingest
from artifact_bus.producers import submit_clickhouse

SQL = (
    "SELECT number AS n, number % 13 AS k, toFloat64(number) * 1.5 AS x, concat('s', toString(number % 101)) AS s "
    "FROM numbers(1000000)"
)


def test_clickhouse_query_lands_in_the_bus_as_queried(root, tmp_path):
    from chdb import session

    sess = session.Session(str(tmp_path / "chdb"))
    try:
        want = sess.query(f"SELECT count(), sum(n), sum(x), sum(k), uniqExact(s) FROM ({SQL})", "JSONCompact")
        want = json.loads(want.bytes())["data"][0]
        r = submit_clickhouse(sess, SQL, "ch_export", run_id="ch-1", max_rows_per_file=300_000, root=root)
    finally:
        sess.close()
    assert [a["rows"] for a in r.artifacts] == [300_000, 300_000, 300_000, 100_000]
    rep = ingest(root)
    assert len(rep.accepted) == 1 and not rep.rejected
    with catalog(root) as con:
        got = con.execute("SELECT count(*), sum(n), sum(x), sum(k), count(DISTINCT s) FROM bus.ch_export").fetchone()
        meta = json.loads(con.execute("SELECT meta FROM catalog.jobs WHERE job_id = ?", [r.job_id]).fetchone()[0])
        files = con.execute("SELECT count(*) FROM catalog.artifacts WHERE job_id = ?", [r.job_id]).fetchone()[0]
    assert int(got[0]) == int(want[0]) == 1_000_000
    assert int(got[1]) == int(want[1])
    assert float(got[2]) == pytest.approx(float(want[2]), rel=1e-12)
    assert (int(got[3]), int(got[4])) == (int(want[3]), int(want[4]))
    assert files == 4
    assert meta["clickhouse"]["query"] == SQL and meta["clickhouse"]["server"] == "chdb"
    assert meta["clickhouse"]["rows"] == 1_000_000 and meta["clickhouse"]["files"] == 4


# 25 million rows of five 8-byte columns: 1,000,000,000 bytes of Arrow data. The process may grow by at most
# a fifth of that beyond what it holds after importing artifact_bus and chdb and opening the session (the
# peak is the kernel's high-water mark of the resident set, reset just before the export: Linux only).
BIG_ROWS, ROW_BYTES, GROWTH_LIMIT = 25_000_000, 5 * 8, 200 << 20

LARGE_EXPORT = """
import json, sys
from pathlib import Path
from chdb import session
from artifact_bus.producers import submit_clickhouse

def status(field):   # bytes, from the kernel's account of this process
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"): return int(line.split()[1]) * 1024

tmp, rows = Path(sys.argv[1]), int(sys.argv[2])
sess = session.Session(str(tmp / "chdb"))
sess.query("SELECT version()", "CSV")
with open("/proc/self/clear_refs", "w") as f: f.write("5")   # reset the peak resident set (VmHWM) to the current one
base = status("VmRSS")
sql = (f"SELECT number AS a, number % 100 AS b, intDiv(number, 1000000) AS c, toFloat64(number % 1000) / 8 AS x, "
       f"number % 7 AS k FROM numbers({rows})")
r = submit_clickhouse(sess, sql, "big", max_rows_per_file=5_000_000, root=tmp / "bus")
print(json.dumps({"base": base, "peak": status("VmHWM"), "rows": r.rows, "bytes": r.bytes, "files": len(r.artifacts)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measures the peak resident set through /proc")
def test_large_export_streams_in_bounded_memory(py, tmp_path):
    out = py.json(LARGE_EXPORT, tmp_path, BIG_ROWS, timeout=600)
    result_bytes, growth = BIG_ROWS * ROW_BYTES, out["peak"] - out["base"]
    print(
        f"\nClickHouse export of {BIG_ROWS:,} rows ({result_bytes / 2**20:,.0f} MiB of Arrow data, "
        f"{out['bytes'] / 2**20:,.0f} MiB of Parquet in {out['files']} files): peak RSS {out['peak'] / 2**20:,.0f} "
        f"MiB, "
        f"{growth / 2**20:,.0f} MiB above the {out['base'] / 2**20:,.0f} MiB after imports"
    )
    assert out["rows"] == BIG_ROWS and out["files"] == 5
    assert result_bytes > GROWTH_LIMIT * 4
    assert growth < GROWTH_LIMIT, f"the export grew the process by {growth / 2**20:.0f} MiB"
