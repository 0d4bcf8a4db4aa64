"""Golden exports written after ingest: one Parquet file per kind plus the built-in catalog listings."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifact_bus import catalog, ingest, submit
from artifact_bus.testing import fills_table, submit_backtest

LISTING_COLUMNS = ["job_id", "name", "kind", "run_id", "producer", "rows", "bytes", "checksum", "path",
                   "submitted_at", "ingested_at"]


def test_exports_follow_the_catalog(root):
    submit_backtest(root, runs=2, n_fills=40)
    ingest(root)
    exports = root / "exports"
    with catalog(root) as con:
        for kind, rows in con.execute("SELECT kind, rows FROM catalog.kinds").fetchall():
            assert pq.read_metadata(exports / f"{kind}.parquet").num_rows == rows, kind
        listing = pq.read_table(exports / "catalog_artifacts.parquet")
        assert listing.column_names == LISTING_COLUMNS
        assert sorted(listing["path"].to_pylist()) == sorted(
            r[0] for r in con.execute("SELECT path FROM catalog.artifacts").fetchall())


@pytest.mark.parametrize("kind", ["catalog_artifacts", "catalog_rejections"])
def test_a_kind_cannot_replace_a_built_in_export(root, kind):
    """Per-kind exports are named after the kind; a kind spelled like a built-in export must not
    overwrite that export with the producer's rows."""
    fills = submit(fills_table(5), "fills", root=root)
    odd = submit(pa.table({"evil": [1, 2, 3]}), kind, root=root)
    rep = ingest(root)
    assert fills.job_id in rep.accepted
    assert odd.job_id in rep.accepted or [r["job_id"] for r in rep.rejected] == [odd.job_id]
    listing = pq.read_table(root / "exports" / "catalog_artifacts.parquet")
    assert listing.column_names == LISTING_COLUMNS
    assert fills.job_id in listing["job_id"].to_pylist()
    rejections = pq.read_table(root / "exports" / "catalog_rejections.parquet")
    assert "code" in rejections.column_names and "evil" not in rejections.column_names
