"""Every data type `submit` accepts ends, after one ingest, in `bus.fills` with the same values and types.

Also: a job of several artifacts is one atomic unit, and a job that fails is never visible.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import sha256

from artifact_bus import KindError, ManifestError, catalog, ingest, job, submit
from artifact_bus.testing import backtest_run, fills_table

TS = [datetime(2024, 1, 2, 14, 30, 0, 123456), datetime(2024, 1, 2, 14, 31), datetime(2024, 1, 2, 15, 0, 0, 1)]
QTY = [10, -20, 3_000_000_000_000]  # the last one does not fit in 32 bits
SIDE = [1, -1, 1]
PRICE = [101.25, None, 99.5]
SYMBOL = ["AAA", None, "CCC"]
LOT = [1, None, 3]
EXPECTED_ROWS = list(zip(TS, QTY, SIDE, PRICE, SYMBOL, LOT))
EXPECTED_TYPES = [
    ("ts", "TIMESTAMP"),
    ("qty", "BIGINT"),
    ("side", "TINYINT"),
    ("price", "DOUBLE"),
    ("symbol", "VARCHAR"),
    ("lot", "BIGINT"),
    ("_job_id", "VARCHAR"),
    ("_run_id", "VARCHAR"),
]


def arrow_table() -> pa.Table:
    return pa.table(
        {
            "ts": pa.array(TS, pa.timestamp("us")),
            "qty": pa.array(QTY, pa.int64()),
            "side": pa.array(SIDE, pa.int8()),
            "price": pa.array(PRICE, pa.float64()),
            "symbol": pa.array(SYMBOL, pa.string()),
            "lot": pa.array(LOT, pa.int64()),
        }
    )


class StreamOnly:
    "Exposes nothing but the Arrow PyCapsule stream protocol (like a DuckDB relation or nanoarrow stream)."

    def __init__(self, table):
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


def as_pandas(tmp_path):
    import pandas as pd

    # ts travels as a DatetimeIndex: an index that carries information must become a column
    return pd.DataFrame(
        {
            "qty": np.array(QTY, dtype="int64"),
            "side": np.array(SIDE, dtype="int8"),
            "price": np.array([np.nan if v is None else v for v in PRICE], dtype="float64"),
            "symbol": np.array(SYMBOL, dtype=object),
            "lot": pd.array(LOT, dtype="Int64"),
        },
        index=pd.DatetimeIndex(TS, name="ts").as_unit("us"),
    )


def as_polars(tmp_path):
    import polars as pl

    return pl.DataFrame(
        {
            "ts": pl.Series(TS, dtype=pl.Datetime("us")),
            "qty": pl.Series(QTY, dtype=pl.Int64),
            "side": pl.Series(SIDE, dtype=pl.Int8),
            "price": pl.Series(PRICE, dtype=pl.Float64),
            "symbol": pl.Series(SYMBOL, dtype=pl.Utf8),
            "lot": pl.Series(LOT, dtype=pl.Int64),
        }
    )


def as_record_batch(tmp_path):
    return arrow_table().combine_chunks().to_batches()[0]


def as_reader(tmp_path):
    t = arrow_table()
    return pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=1))  # three batches


def parquet_file(tmp_path) -> Path:
    p = tmp_path / "input" / "fills.parquet"
    p.parent.mkdir(exist_ok=True)
    pq.write_table(arrow_table(), p)
    return p


INPUTS = {
    "pandas_datetimeindex": as_pandas,
    "polars": as_polars,
    "pyarrow_table": lambda tmp_path: arrow_table(),
    "pyarrow_record_batch": as_record_batch,
    "pyarrow_record_batch_reader": as_reader,
    "arrow_c_stream_only": lambda tmp_path: StreamOnly(arrow_table()),
    "parquet_str_path": lambda tmp_path: str(parquet_file(tmp_path)),
    "parquet_pathlib_path": parquet_file,
}


@pytest.mark.parametrize("make", INPUTS.values(), ids=INPUTS.keys())
def test_each_input_type_lands_in_bus_fills(root, tmp_path, make):
    data = make(tmp_path)
    r = submit(data, "fills", run_id="run-types", producer="types-test", meta={"case": "types"}, root=root)

    assert r.status == "committed"
    assert r.rows == 3
    assert Path(r.path) == root / "inbox" / r.job_id
    assert sorted(os.listdir(r.path)) == ["COMMIT", "fills.parquet", "manifest.json"]
    assert [a["kind"] for a in r.artifacts] == ["fills"]

    rep = ingest(root)
    assert rep.accepted == [r.job_id]
    assert rep.rejected == [] and rep.duplicates == []

    with catalog(root) as con:
        types = [(c, t) for c, t, *_ in con.execute("DESCRIBE bus.fills").fetchall()]
        assert types == EXPECTED_TYPES
        rows = con.execute("SELECT ts, qty, side, price, symbol, lot FROM bus.fills ORDER BY ts").fetchall()
        assert rows == EXPECTED_ROWS
        assert con.execute("SELECT DISTINCT _job_id, _run_id FROM bus.fills").fetchall() == [(r.job_id, "run-types")]
        # the nulls are real NULLs, not NaN or the string 'None'
        assert (
            con.execute(
                "SELECT count(*) FROM bus.fills WHERE price IS NULL AND symbol IS NULL AND lot IS NULL"
            ).fetchone()[0]
            == 1
        )
        job_row = con.execute("SELECT status, run_id, producer, n_artifacts, rows, meta FROM catalog.jobs").fetchall()
        assert len(job_row) == 1
        status, run_id, producer, n_art, nrows, meta = job_row[0]
        assert (status, run_id, producer, n_art, nrows) == ("accepted", "run-types", "types-test", 1, 3)
        assert json.loads(meta) == {"case": "types"}
        assert con.execute("SELECT kind, jobs, artifacts, rows FROM catalog.kinds").fetchall() == [("fills", 1, 1, 3)]
        stored = con.execute("SELECT path FROM catalog.artifacts").fetchone()[0]

    assert os.listdir(root / "inbox") == [".tmp"]
    if isinstance(data, (str, os.PathLike)):
        # a Parquet file is stored as it is, byte for byte
        assert sha256(root / stored) == sha256(data)


def test_multi_artifact_job_is_one_atomic_unit(root):
    t = backtest_run("sim-042", seed=42, n_fills=50)
    extra = fills_table(7, seed=9, run_id="sim-042")
    with job(run_id="sim-042", producer="SimulationArtifactWriter", root=root, meta={"seed": 42}) as j:
        j.add("fills", t["fills"])
        j.add("positions", t["positions"])
        j.add("fills", extra)
        # nothing is visible to the writer before the block ends
        assert os.listdir(root / "inbox") == [".tmp"]
    r = j.receipt
    assert r.status == "committed"
    assert [(a["name"], a["kind"]) for a in r.artifacts] == [
        ("fills", "fills"),
        ("positions", "positions"),
        ("fills-2", "fills"),
    ]
    assert r.rows == 50 + t["positions"].num_rows + 7

    rep = ingest(root)
    assert rep.accepted == [r.job_id]

    with catalog(root) as con:
        arts = con.execute(
            "SELECT name, kind, rows FROM catalog.artifacts WHERE job_id = ? ORDER BY name", [r.job_id]
        ).fetchall()
        assert arts == [
            ("fills", "fills", 50),
            ("fills-2", "fills", 7),
            ("positions", "positions", t["positions"].num_rows),
        ]
        assert con.execute("SELECT n_artifacts, rows FROM catalog.jobs WHERE job_id = ?", [r.job_id]).fetchone() == (
            3,
            r.rows,
        )
        got = con.execute("SELECT order_id, _job_id, _run_id FROM bus.fills ORDER BY order_id").fetchall()
        want = sorted(t["fills"]["order_id"].to_pylist() + extra["order_id"].to_pylist())
        assert [g[0] for g in got] == want
        assert {g[1:] for g in got} == {(r.job_id, "sim-042")}
        pos = con.execute("SELECT symbol, qty FROM bus.positions ORDER BY symbol").fetchall()
        assert pos == list(zip(t["positions"]["symbol"].to_pylist(), t["positions"]["qty"].to_pylist()))
        (store_path,) = con.execute("SELECT path FROM catalog.jobs WHERE job_id = ?", [r.job_id]).fetchone()
    assert sorted(os.listdir(root / store_path)) == [
        "COMMIT",
        "fills-2.parquet",
        "fills.parquet",
        "manifest.json",
        "positions.parquet",
    ]


def _assert_nothing_visible(root):
    assert sorted(os.listdir(root / "inbox")) == [".tmp"]
    assert os.listdir(root / "inbox" / ".tmp") == []


def test_raising_block_leaves_nothing(root):
    t = fills_table(20, seed=1)
    with pytest.raises(RuntimeError, match="simulation crashed"):
        with job(run_id="crash", root=root) as j:
            j.add("fills", t)
            j.add("positions", t)
            # work in progress exists, but only under inbox/.tmp
            assert len(os.listdir(root / "inbox" / ".tmp")) == 1
            raise RuntimeError("simulation crashed")
    _assert_nothing_visible(root)
    assert j.receipt is None

    rep = ingest(root)
    assert rep.accepted == [] and rep.rejected == []
    with catalog(root) as con:
        assert con.execute("SELECT count(*) FROM catalog.jobs").fetchone()[0] == 0


@pytest.mark.parametrize("bad", ["unsupported_type", "not_parquet_file", "missing_file", "reserved_column"])
def test_failed_submit_leaves_nothing(root, tmp_path, bad):
    if bad == "unsupported_type":
        data = {"qty": [1, 2, 3]}  # a dict is not a table
    elif bad == "not_parquet_file":
        data = tmp_path / "notes.parquet"
        data.write_text("this is not parquet\n")
    elif bad == "missing_file":
        data = tmp_path / "nowhere.parquet"
    else:
        data = pa.table({"qty": [1], "_job_id": ["mine"]})
    with pytest.raises(ManifestError):
        submit(data, "fills", root=root)
    if (root / "inbox").exists():
        _assert_nothing_visible(root)


def test_bad_kind_is_refused_before_anything_is_written(root):
    with pytest.raises(KindError):
        submit(fills_table(3), "fills; drop table x", root=root)
    if (root / "inbox").exists():
        _assert_nothing_visible(root)


def test_reserved_column_in_other_letter_case_cannot_hide_the_job_id(root):
    """DuckDB identifiers are case-insensitive, so a producer column `_JOB_ID` is the same name as the
    bus's `_job_id`. Either it is refused (at submit or at ingest), or bus.fills._job_id still is the job id."""
    data = pa.table({"qty": [1, 2], "_JOB_ID": [111, 222]})
    try:
        r = submit(data, "fills", root=root)
    except ManifestError:
        _assert_nothing_visible(root)
        return
    rep = ingest(root)
    if r.job_id not in rep.accepted:
        assert [x["job_id"] for x in rep.rejected] == [r.job_id]
        return
    with catalog(root) as con:
        assert con.execute("SELECT DISTINCT _job_id::VARCHAR FROM bus.fills").fetchall() == [(r.job_id,)]
