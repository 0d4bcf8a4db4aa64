"""Re-materialised slices and feature set versions, end to end: these need the WRITER side of
`replace=True` (ingest marks the earlier accepted job with the same key `replaced`, the `bus.<kind>`
views leave it out, identical content is a duplicate). The producer side (the manifest's
`"replace": true`) and the readers are in place; set WRITER_HONOURS_REPLACE to True when the writer is."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from artifact_bus import catalog, ingest
from artifact_bus.producer_views import feature_sets, read_feature_set, slice_coverage, slices
from artifact_bus.producers import submit_feature_set, submit_slice

WRITER_HONOURS_REPLACE = True
pytestmark = pytest.mark.skipif(not WRITER_HONOURS_REPLACE, reason="needs the writer side of replace=True (ingest)")


def prices(days, close=1.0):
    return pa.table(
        {
            "ts": pa.array([datetime(2024, 1, d, 15) for d in days], pa.timestamp("us")),
            "symbol": ["AAPL"] * len(days),
            "close": [close] * len(days),
        }
    )


def january(data, root):
    return submit_slice(
        data, "prices", start="2024-01-01", end="2024-02-01", granularity="1d", symbols=["AAPL"], root=root
    )


def statuses(root):
    with catalog(root) as con:
        return dict(con.execute("SELECT job_id, status FROM catalog.jobs").fetchall())


def test_a_rematerialised_slice_replaces_the_earlier_one(root):
    first = january(prices([2, 3]), root)
    ingest(root)
    second = january(prices([2, 3, 4], close=2.0), root)  # the same slice, recomputed: new content
    rep = ingest(root)
    assert second.job_id in rep.accepted
    assert statuses(root)[first.job_id] == "replaced"
    assert [(s.job_id, s.rows) for s in slices("prices", root=root)] == [(second.job_id, 3)]
    with catalog(root) as con:
        assert con.execute("SELECT count(*), sum(close), min(_job_id) FROM bus.prices").fetchone() == (
            3,
            6.0,
            second.job_id,
        )
    assert slice_coverage("prices", "2024-01-01", "2024-02-01", root=root).overlaps == []


def test_both_copies_in_one_ingest_the_later_wins(root):
    january(prices([2]), root)
    second = january(prices([2, 9], close=3.0), root)
    ingest(root)
    assert [s.job_id for s in slices("prices", root=root)] == [second.job_id]
    with catalog(root) as con:
        assert con.execute("SELECT count(*) FROM bus.prices").fetchone()[0] == 2


def test_identical_content_is_a_duplicate_and_keeps_the_first(root):
    first = january(prices([2, 3]), root)
    ingest(root)
    again = january(prices([2, 3]), root)
    rep = ingest(root)
    assert again.job_id in [d["job_id"] for d in rep.duplicates]
    assert statuses(root)[first.job_id] == "accepted"
    assert [s.job_id for s in slices("prices", root=root)] == [first.job_id]


def test_a_rematerialised_feature_set_version_replaces_it(root):
    v1 = pa.table({"symbol": ["AAPL", "MSFT"], "momentum": [0.1, 0.2]})
    submit_feature_set(v1, "momentum", version=1, definition={"window": 20}, root=root)
    submit_feature_set(v1.slice(0, 1), "momentum", version=2, definition={"window": 60}, root=root)
    ingest(root)
    again = submit_feature_set(
        v1.set_column(1, "momentum", pa.array([0.3, 0.4])), "momentum", version=1, definition={"window": 20}, root=root
    )
    ingest(root)
    assert [(f.version, f.job_id == again.job_id) for f in feature_sets("momentum", latest=False, root=root)] == [
        ("2", False),
        ("1", True),
    ]
    assert read_feature_set("momentum", 1, root=root).column("momentum").to_pylist() == [0.3, 0.4]
    with catalog(root) as con:
        assert con.execute("SELECT count(*) FROM bus.features").fetchone()[0] == 3
