"""Golden exports written after ingest: one export per kind plus the built-in catalog listings (append exports:
folders of parts)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from artifact_bus import catalog, ingest, submit
from artifact_bus.catalog_db import WriterLock, writer_connection
from artifact_bus.core import load_config
from artifact_bus.export import run_exports
from artifact_bus.testing import fills_table, submit_backtest

LISTING_COLUMNS = [
    "job_id",
    "name",
    "kind",
    "run_id",
    "producer",
    "rows",
    "bytes",
    "checksum",
    "path",
    "submitted_at",
    "ingested_at",
]


def test_exports_follow_the_catalog(root):
    submit_backtest(root, runs=2, n_fills=40)
    ingest(root)
    exports = root / "exports"
    with catalog(root) as con:
        for kind, rows in con.execute("SELECT kind, rows FROM catalog.kinds").fetchall():
            assert pq.read_table(exports / kind).num_rows == rows, kind  # the folder of its parts
        listing = pq.read_table(exports / "catalog_artifacts")
        assert listing.column_names == LISTING_COLUMNS
        assert sorted(listing["path"].to_pylist()) == sorted(
            r[0] for r in con.execute("SELECT path FROM catalog.artifacts").fetchall()
        )


@pytest.mark.parametrize("kind", ["catalog_artifacts", "catalog_rejections"])
def test_a_kind_cannot_replace_a_built_in_export(root, kind):
    """Per-kind exports are named after the kind; a kind spelled like a built-in export must not
    overwrite that export with the producer's rows."""
    fills = submit(fills_table(5), "fills", root=root)
    odd = submit(pa.table({"evil": [1, 2, 3]}), kind, root=root)
    rep = ingest(root)
    assert fills.job_id in rep.accepted
    assert odd.job_id in rep.accepted or [r["job_id"] for r in rep.rejected] == [odd.job_id]
    listing = pq.read_table(root / "exports" / "catalog_artifacts")
    assert listing.column_names == LISTING_COLUMNS
    assert fills.job_id in listing["job_id"].to_pylist()
    rejections = pq.read_table(root / "exports" / "catalog_rejections")
    assert "code" in rejections.column_names and "evil" not in rejections.column_names


SETTINGS = (
    "SELECT current_setting('memory_limit') AS memory_limit, current_setting('threads') AS threads, "
    "current_setting('enable_external_file_cache') AS file_cache, "
    "current_setting('preserve_insertion_order') AS keep_order"
)


def _settings(con) -> dict:
    return dict(zip(["memory_limit", "threads", "file_cache", "keep_order"], con.execute(SETTINGS).fetchone()))


@pytest.mark.parametrize("mb", [256, 128, 0])
def test_exports_run_under_their_memory_settings_and_give_the_connection_its_own_back(root, tmp_path, mb):
    """The export records the settings it ran under: the memory limit of `export_memory_mb` with at most
    one thread per 128 MB (0: DuckDB's own), no file cache, no insertion order. The writer's connection
    has its own settings back afterwards (the memory limit as DuckDB reports it, to 0.1 of its unit)."""
    submit(fills_table(5), "fills", root=root)
    ingest(root)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "settings.sql").write_text(SETTINGS)
    config = load_config(root, exports=[str(mine)], export_memory_mb=mb)
    with WriterLock(config.lock), writer_connection(config) as con:
        before = _settings(con)
        assert run_exports(con, config, names=["settings"])["settings"]["status"] == "ok"
        after = _settings(con)
    during = pq.read_table(root / "exports" / "settings.parquet").to_pylist()[0]
    assert (during["file_cache"], during["keep_order"]) == (False, False)
    if mb:
        assert during["memory_limit"] == f"{mb}.0 MiB"
        assert during["threads"] == min(before["threads"], mb // 128)
    else:
        assert (during["memory_limit"], during["threads"]) == (before["memory_limit"], before["threads"])
    (a, a_unit), (b, b_unit) = (s.split() for s in (after["memory_limit"], before["memory_limit"]))
    assert a_unit == b_unit and float(a) == pytest.approx(float(b), abs=0.11)
    assert {k: after[k] for k in ("threads", "file_cache", "keep_order")} == {
        k: before[k] for k in ("threads", "file_cache", "keep_order")
    }


EXPORT_PEAK = """
import json, os, sys
from artifact_bus.export import export

out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)   # DuckDB's progress bar would write to stdout

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f: f.write("5")   # the peak starts again from here, after the imports
base = rss("VmRSS")
st = export(sys.argv[1], names=[sys.argv[2]])[sys.argv[2]]
extra_mb = (rss("VmHWM") - base) / 2**20
print(json.dumps({"status": st["status"], "error": st["error"], "rows": st["rows"], "extra_mb": extra_mb}), file=out)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_export_memory_does_not_follow_what_it_reads(root, tmp_path, py):
    """A user's export that sorts a whole kind spills past `export_memory_mb` instead of holding the kind
    in memory (without a limit, this sort peaked near 700 MB), and still writes it in order; the built-in
    per-kind export streams. Each is measured in a fresh process: its peak RSS above its imports."""
    n = 3_000_000
    submit(fills_table(n, 1, "big"), "fills", run_id="big", root=root, required=True)
    ingest(root, exports=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sorted_fills.sql").write_text("SELECT * FROM bus.fills ORDER BY price, order_id")
    (root / "bus.toml").write_text(f'exports = ["{mine}"]\nexport_memory_mb = 128\n')
    for name in ("sorted_fills", "fills"):
        got = py.json(EXPORT_PEAK, root, name)
        assert (got["status"], got["rows"]) == ("ok", n), got
        assert got["extra_mb"] < 300, got
    price = pq.read_table(root / "exports" / "sorted_fills.parquet", columns=["price"])["price"]
    assert pc.all(pc.greater_equal(price[1:], price[:-1])).as_py()
