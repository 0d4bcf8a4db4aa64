"""No poison pill: one bad job, file or setting never stops the bus.

Each case puts one poisoned entry into the inbox between good jobs of several producers, then runs one
ingest in a separate process, as the scheduled writer would. Every case asserts the same contract:

- the run succeeds and the good jobs of the same batch are queryable after it;
- the bad job is quarantined under `rejected/<job_id>/payload` with `reason.json` beside it (the
  stable code, a message naming the file or field), every byte kept;
- nothing outside the root is touched, and a second ingest changes no data.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_helpers import run, writer_tables

from artifact_bus import catalog, submit
from artifact_bus.testing import fills_table

INGEST = """
import json, sys
from artifact_bus import ingest
r = ingest(sys.argv[1])
print(json.dumps({"accepted": r.accepted, "rejected": r.rejected, "duplicates": r.duplicates, "held": r.held,
                  "warnings": r.warnings}))
"""


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rewrite(d: Path, edit) -> None:
    "Edit a committed job's manifest and commit it again (the corruption passes the COMMIT check)."
    m = json.loads((d / "manifest.json").read_bytes())
    edit(m)
    raw = json.dumps(m).encode()
    (d / "manifest.json").write_bytes(raw)
    (d / "COMMIT").write_text(sha(raw))


def restate(d: Path, name: str = "fills.parquet", **schema) -> None:
    "Make the manifest describe the artifact file as it now is on disk (bytes, checksum, rows, schema)."
    data = (d / name).read_bytes()
    pf = pq.ParquetFile(d / name)

    def edit(m):
        a = next(a for a in m["artifacts"] if a["file"] == name)
        a["bytes"], a["checksum"], a["rows"] = len(data), sha(data), pf.metadata.num_rows
        a["schema"] = schema.get("schema") or {
            "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in pf.schema_arrow]
        }

    rewrite(d, edit)


def good_jobs(root: Path, n: int = 3, seed: int = 0) -> list[str]:
    return [
        submit(fills_table(20, seed=seed + i), "fills", run_id=f"good-{seed + i}", producer=f"p{i}", root=root).job_id
        for i in range(n)
    ]


def ingest(root: Path, cwd: Path) -> dict:
    return json.loads(run(INGEST, root, cwd=cwd).stdout)


def assert_contract(root: Path, rep: dict, good: list[str], bad: str, code: str, says: str) -> None:
    assert sorted(rep["accepted"]) == sorted(good), rep
    got = {r["job_id"]: r for r in rep["rejected"]}
    assert bad in got, rep
    assert got[bad]["code"] == code, got[bad]
    assert says in got[bad]["message"], got[bad]
    q = root / "rejected" / bad
    assert json.loads((q / "reason.json").read_text())["code"] == code
    assert os.path.lexists(q / "payload")
    with catalog(root) as con:
        runs = con.execute("SELECT _run_id, count(*) FROM bus.fills GROUP BY 1").fetchall()
        assert {r for r, _ in runs} >= {f"good-{i}" for i in range(len(good))} or len(runs) >= len(good)
        assert con.execute("SELECT count(*) FROM catalog.rejections WHERE job_id = ?", [bad]).fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM catalog.jobs WHERE job_id = ?", [bad]).fetchone()[0] == 0
    before = writer_tables(root)
    again = ingest(root, root.parent)
    assert again["accepted"] == again["rejected"] == again["duplicates"] == []
    assert writer_tables(root) == before, "a second ingest changed the catalog"


# --- the cases -------------------------------------------------------------------------------------------


def test_a_file_pyarrow_reads_but_duckdb_refuses(root, tmp_path):
    "GeoParquet metadata without geometry types: pyarrow reads it, DuckDB refuses it at every view."
    good = good_jobs(root)
    geo = {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    t = pa.table({"geometry": pa.array([b"\x01", b"\x02"]), "qty": [1.0, 2.0]}).replace_schema_metadata(
        {"geo": json.dumps(geo)}
    )
    bad = submit(t, "fills", run_id="geo", root=root).job_id
    good += good_jobs(root, 2, seed=10)
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, bad, "unreadable", "fills.parquet: DuckDB cannot read it")
    with catalog(root) as con:  # the view stands, and sums as before
        assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == 20 * len(good)


def test_a_job_id_past_the_year_9999(root, tmp_path):
    good = good_jobs(root)
    d = Path(submit(fills_table(5, seed=3), "fills", run_id="far", root=root).path)
    far = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
    rewrite(d, lambda m: m.update(job_id=far))
    d.rename(d.parent / far)
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, far, "job_id_invalid", "encodes a time more than 1 day ahead")


@pytest.mark.parametrize("field", ["run_id", "producer", "key", "meta"])
def test_a_lone_surrogate_or_nul_in_the_manifest(root, tmp_path, field):
    good = good_jobs(root)
    d = Path(submit(fills_table(5, seed=4), "fills", run_id="x", key="k", root=root).path)
    value = {"meta": {"note": "\ud800"}}.get(field, "a\ud800b" if field != "key" else "k\x00")
    rewrite(d, lambda m: m.update({field: value}))
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, d.name, "text_invalid", field)


def _lie_about_rows(path: Path) -> None:
    "Rewrite the file-level row count of a Parquet footer: the row groups keep the truth."
    data = path.read_bytes()
    n = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - n
    footer = bytearray(data[start:-8])
    rows = pq.ParquetFile(path).metadata.num_rows
    # FileMetaData.num_rows is field 3 (i64) right after the schema list: the first i64 field header 0x16 holding `rows`
    zig = (rows << 1).to_bytes(1, "little")
    i = footer.index(b"\x16" + zig)
    footer[i + 1] = (rows + 1) << 1
    path.write_bytes(data[:start] + bytes(footer) + data[-8:])
    assert pq.ParquetFile(path).metadata.num_rows == rows + 1


def test_a_footer_that_lies_about_its_row_count(root, tmp_path):
    good = good_jobs(root)
    d = Path(submit(pa.table({"qty": [1.0, 2.0, 3.0]}), "fills", run_id="liar", root=root).path)
    _lie_about_rows(d / "fills.parquet")
    restate(d)  # the manifest agrees with the lying footer
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, d.name, "row_count_mismatch", "fills.parquet")
    with catalog(root) as con:  # the catalog and the view agree
        want = con.execute("SELECT sum(rows) FROM catalog.artifacts WHERE kind = 'fills'").fetchone()[0]
        assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == want


def test_duplicate_column_names(root, tmp_path):
    good = good_jobs(root)
    d = Path(submit(pa.table({"x": [1]}), "fills", run_id="dup", root=root).path)
    t = pa.Table.from_arrays([pa.array([{"a": 1}]), pa.array([1])], names=["x", "x"])
    pq.write_table(t, d / "fills.parquet")
    restate(d, schema={"fields": [{"name": "x", "type": "int64", "nullable": True}] * 2})
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, d.name, "duplicate_column", "columns 'x' and 'x'")


def test_columns_equal_ignoring_case(root, tmp_path):
    good = good_jobs(root)
    d = Path(submit(pa.table({"x": [1]}), "fills", run_id="case", root=root).path)
    pq.write_table(pa.table({"Price": [1.0], "price": [2.0]}), d / "fills.parquet")
    restate(d)
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, d.name, "duplicate_column", "'Price' and 'price'")


def test_an_all_null_column_in_a_kinds_first_job_does_not_fix_its_type(root, tmp_path):
    import pandas as pd

    first = submit(pd.DataFrame({"symbol": ["A", "B"], "note": [None, None]}), "orders", run_id="r1", root=root).job_id
    rep = ingest(root, tmp_path)
    assert rep["accepted"] == [first]
    later = submit(pd.DataFrame({"symbol": ["C"], "note": ["filled late"]}), "orders", run_id="r2", root=root).job_id
    lossy = submit(pd.DataFrame({"symbol": ["D"], "note": [3]}), "orders", run_id="r3", root=root).job_id
    rep = ingest(root, tmp_path)
    assert rep["accepted"] == [later]
    assert [(r["job_id"], r["code"]) for r in rep["rejected"]] == [(lossy, "schema_conflict")]
    with catalog(root) as con:
        assert con.execute("SELECT note FROM bus.orders WHERE note IS NOT NULL").fetchall() == [("filled late",)]


def test_int64_through_double_is_refused_not_applied(root, tmp_path):
    first = submit(pa.table({"n": pa.array([2**53 + 1], pa.int64())}), "counts", root=root).job_id
    ingest(root, tmp_path)
    lossy = submit(pa.table({"n": pa.array([0.5])}), "counts", root=root).job_id
    rep = ingest(root, tmp_path)
    assert [(r["job_id"], r["code"]) for r in rep["rejected"]] == [(lossy, "schema_conflict")]
    assert "without losing information" in rep["rejected"][0]["message"]
    with catalog(root) as con:
        assert con.execute("SELECT n FROM bus.counts").fetchall() == [(2**53 + 1,)]
        assert first in {r[0] for r in con.execute("SELECT _job_id FROM bus.counts").fetchall()}


def test_one_jobs_artifacts_are_compared_with_each_other(root, tmp_path):
    from artifact_bus import job

    good = good_jobs(root)
    with job(run_id="two", root=root) as j:
        j.add("fills", pa.table({"qty": [1.0]}), name="a")
        j.add("fills", pa.table({"qty": [["x"]]}), name="b")
    bad = j.job_id
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, bad, "schema_conflict", "column 'qty'")


def test_a_broken_contract_holds_only_its_kind(root, tmp_path):
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "events.toml").write_text("[columns\nbroken")
    good = good_jobs(root)
    held = submit(pa.table({"type": ["start"]}), "events", run_id="ev", root=root).job_id
    rep = ingest(root, tmp_path)
    assert sorted(rep["accepted"]) == sorted(good) and rep["rejected"] == []
    assert [h["job_id"] for h in rep["held"]] == [held]
    assert "events.toml: not valid TOML" in rep["held"][0]["message"]
    assert (root / "inbox" / held).is_dir()  # it waits, untouched
    (root / "contracts" / "events.toml").write_text('[columns]\ntype = "string"\n')
    rep = ingest(root, tmp_path)
    assert rep["accepted"] == [held]


def test_a_symlinked_inbox_tmp_is_never_followed(root, tmp_path):
    good = good_jobs(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious.txt"
    precious.write_text("keep me")
    os.utime(precious, (0, 0))
    tmp = root / "inbox" / ".tmp"
    for p in tmp.iterdir():
        p.rmdir()
    tmp.rmdir()
    tmp.symlink_to(outside)
    rep = ingest(root, tmp_path)
    assert sorted(rep["accepted"]) == sorted(good)
    assert precious.read_text() == "keep me"


def test_a_hardlinked_artifact_is_copied_into_the_store(root, tmp_path):
    good = good_jobs(root)
    mine = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"x": [42]}), mine)
    d = Path(submit(pa.table({"x": [42]}), "hard", run_id="hl", root=root).path)
    (d / "fills.parquet").unlink() if (d / "fills.parquet").exists() else None
    f = next(d.glob("*.parquet"))
    f.unlink()
    os.link(mine, f)
    restate(d, f.name)
    rep = ingest(root, tmp_path)
    assert sorted(rep["accepted"]) == sorted(good + [d.name])
    pq.write_table(pa.table({"x": [6036]}), mine.with_suffix(".new"))
    # the producer rewrites its own file in place: the store must not change
    with open(mine, "r+b") as fh:
        fh.write(mine.with_suffix(".new").read_bytes())
        fh.truncate()
    with catalog(root) as con:
        assert con.execute("SELECT sum(x) FROM bus.hard").fetchone()[0] == 42


def test_producer_files_named_like_the_reason_are_kept(root, tmp_path):
    good = good_jobs(root)
    d = Path(submit(fills_table(5, seed=9), "fills", run_id="r", root=root).path)
    (d / "reason.json").write_text("mine")
    (d / "reason.json.payload").write_text("also mine")
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, d.name, "file_unlisted", "reason.json")
    kept = root / "rejected" / d.name / "payload"
    assert (kept / "reason.json").read_text() == "mine"
    assert (kept / "reason.json.payload").read_text() == "also mine"


def test_an_unreadable_file_costs_its_job_not_the_run(root, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    good = good_jobs(root)
    d = Path(submit(fills_table(5, seed=9), "fills", run_id="r", root=root).path)
    next(d.glob("*.parquet")).chmod(0)
    rep = ingest(root, tmp_path)
    assert_contract(root, rep, good, d.name, "unreadable", "Permission denied")


def test_run_numbers_are_unique_even_for_runs_that_record_nothing(root, tmp_path):
    from artifact_bus import ingest as ingest_here

    good_jobs(root, 1)
    seen = [ingest_here(root).run_no for _ in range(3)]
    assert len(set(seen)) == 3


def test_doctor_deep_notices_a_stored_file_that_changed(root, tmp_path):
    import subprocess

    from reliability_helpers import CLI

    good = good_jobs(root, 2)
    ingest(root, tmp_path)
    deep = subprocess.run([CLI, "doctor", "--deep", "--root", str(root)], capture_output=True, text=True)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert "2 stored files match their checksums" in deep.stdout
    stored = next((root / "store").glob(f"*/{good[0]}/*.parquet"))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 1
    stored.write_bytes(bytes(data))
    deep = subprocess.run([CLI, "doctor", "--deep", "--root", str(root)], capture_output=True, text=True)
    assert deep.returncode == 1
    assert "1 stored files no longer match their checksum" in deep.stdout
    plain = subprocess.run([CLI, "doctor", "--root", str(root)], capture_output=True, text=True)
    assert "checksums" not in plain.stdout  # only --deep reads the whole store


def test_a_full_disk_is_reported_as_a_full_disk_and_loses_nothing(tmp_path):
    "Only a fault of the machine may fail a run; then the error says what it is, and the next run finishes the batch."
    from reliability_helpers import assert_bus_consistent, tmpfs

    from artifact_bus import BusUnavailable
    from artifact_bus import ingest as ingest_here

    with tmpfs(tmp_path / "small", "8m") as mnt:
        root = mnt / "bus"
        first = good_jobs(root, 1)
        ingest_here(root, exports=False)
        late = good_jobs(root, 5, seed=20)
        filler = mnt / "filler"
        with open(filler, "wb") as f:  # fill every block the bus could still use
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass
        with pytest.raises(BusUnavailable, match="disk full"):
            ingest_here(root, exports=False)
        filler.unlink()
        rep = ingest_here(root, exports=False)
        assert sorted(rep.accepted) == sorted(late) and rep.rejected == []
        assert_bus_consistent(root, {j: {"fills": 20} for j in first + late})
