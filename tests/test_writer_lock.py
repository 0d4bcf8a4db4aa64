"""The single-writer lock across processes, and readers that never block the writer."""

from __future__ import annotations

import json
import os
import re

import pyarrow as pa
import pytest
from helpers import HANG_GUARD, HOLDER, expect_line, stop

from artifact_bus import NotFound, WriterBusy, catalog, gc, ingest, submit


def _qty(n, start=0):
    return pa.table({"qty": pa.array(range(start, start + n), pa.int64())})


def test_second_writer_is_refused_and_a_killed_holder_frees_the_lock(root, py):
    waiting = submit(_qty(5), "fills", run_id="waiting", root=root)
    holder = py.spawn(HOLDER, root / "writer.lock")
    try:
        expect_line(holder, "locked")

        with pytest.raises(WriterBusy) as exc:
            ingest(root)
        msg = str(exc.value)
        assert msg.startswith("writer already running")
        assert re.search(rf"\bpid {holder.pid}\b", msg), msg
        # the refused writer touched nothing: the job still waits, nothing was published
        assert (root / "inbox" / waiting.job_id / "COMMIT").is_file()
        with pytest.raises(NotFound):
            catalog(root)

        # refused again, as often as asked: refusal does not disturb the holder's lock
        with pytest.raises(WriterBusy):
            ingest(root)
        assert holder.poll() is None
    finally:
        stop(holder)  # SIGKILL: no cleanup in the holder, the kernel drops its flock
    assert holder.returncode == -9

    # the lock file still names the dead holder, but the lock itself is free
    assert json.loads((root / "writer.lock").read_text())["pid"] == holder.pid
    rep = ingest(root)
    assert rep.accepted == [waiting.job_id]
    with catalog(root) as con:
        assert con.execute("SELECT count(*), sum(qty) FROM bus.fills").fetchone() == (5, 10)


def test_writer_busy_seen_from_another_process(root, py):
    "An ingest started in a second process is refused too, and learns who holds the lock."
    holder = py.spawn(HOLDER, root / "writer.lock")
    try:
        expect_line(holder, "locked")
        p = py.run(
            """
            import sys
            from artifact_bus import ingest, WriterBusy
            try:
                ingest(sys.argv[1])
            except WriterBusy as e:
                print(e)
                sys.exit(3)
        """,
            root,
            check=False,
        )
        assert p.returncode == 3, p.stderr
        assert f"pid {holder.pid}" in p.stdout
    finally:
        stop(holder)


READER = """
import json, sys
from artifact_bus import catalog
con = catalog(sys.argv[1])
path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0]
print(json.dumps({"file": path}), flush=True)
for line in sys.stdin:
    sql = line.strip()
    if not sql:
        break
    try:
        print(json.dumps({"rows": con.execute(sql).fetchall()}, default=str), flush=True)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
con.close()
"""


def _ask(reader, sql):
    reader.stdin.write(sql + "\n")
    reader.stdin.flush()
    line = reader.stdout.readline()
    assert line, f"reader process died: {reader.stderr.read() if reader.poll() is not None else ''}"
    out = json.loads(line)
    assert "error" not in out, out["error"]
    return out["rows"]


def test_open_reader_never_blocks_the_writer(root, py):
    root.mkdir()
    (root / "bus.toml").write_text("retain_versions = 1\nretain_days = 0\n")  # gc may remove every old version
    first = submit(_qty(10), "fills", run_id="first", root=root)
    assert ingest(root).accepted == [first.job_id]

    reader = py.spawn(READER, root)  # another process holds the published catalog open throughout
    try:
        first_line = reader.stdout.readline()
        assert first_line, f"reader process died: {reader.stderr.read()}"
        snap_file = json.loads(first_line)["file"]
        assert os.path.exists(snap_file)
        assert _ask(reader, "SELECT count(*), sum(qty) FROM bus.fills") == [[10, 45]]

        second = submit(_qty(20, start=100), "fills", run_id="second", root=root)
        assert ingest(root).accepted == [second.job_id]

        # a new reader sees the new data
        with catalog(root) as con:
            assert con.execute("SELECT count(*), sum(qty) FROM bus.fills").fetchone() == (30, 45 + sum(range(100, 120)))
            assert con.execute("SELECT count(*) FROM catalog.jobs").fetchone()[0] == 2
        # the old reader still works, on its consistent snapshot
        assert _ask(reader, "SELECT count(*), sum(qty) FROM bus.fills") == [[10, 45]]
        assert _ask(reader, "SELECT count(*) FROM catalog.jobs") == [[1]]

        # the writer goes on publishing, and gc removes every old version but the one the reader holds
        for k in range(5):
            r = submit(_qty(1, start=1000 + k), "events", run_id=f"more-{k}", root=root)
            assert ingest(root).accepted == [r.job_id]
        report = gc(root)
        assert os.path.basename(snap_file) in report.in_use, report
        assert os.path.exists(snap_file)
        # ... and the reader holding it open is unaffected
        assert _ask(reader, "SELECT count(*), sum(qty) FROM bus.fills") == [[10, 45]]
        assert _ask(reader, "SELECT kind FROM catalog.kinds") == [["fills"]]
        reader.stdin.write("\n")
        reader.stdin.flush()
        reader.wait(timeout=HANG_GUARD)
        assert reader.returncode == 0, reader.stderr.read()
    finally:
        stop(reader)
    gc(root)  # the reader is gone: now its version goes
    assert not os.path.exists(snap_file)

    with catalog(root) as con:
        assert con.execute("SELECT kind, jobs, rows FROM catalog.kinds ORDER BY kind").fetchall() == [
            ("events", 5, 5),
            ("fills", 2, 30),
        ]


KILLED_WRITER = """
import logging, sys
from artifact_bus import ingest

class Progress(logging.Handler):
    def emit(self, record):
        print("progress", flush=True)

logging.getLogger("artifact_bus").addHandler(Progress())
logging.getLogger("artifact_bus").setLevel(logging.INFO)
ingest(sys.argv[1])
print("done", flush=True)
"""


def test_writer_killed_mid_run_loses_and_duplicates_nothing(root, py):
    "A writer SIGKILLed between batches: the next run frees the lock and catalogs every job exactly once."
    root.mkdir()
    (root / "bus.toml").write_text("batch_size = 5\n")
    want = {}
    for j in range(60):
        n = 1 + j % 9
        r = submit(
            pa.table({"qty": pa.array([j * 100 + k for k in range(n)], pa.int64())}),
            "fills",
            run_id=f"r{j:03d}",
            root=root,
        )
        want[f"r{j:03d}"] = (n, sum(j * 100 + k for k in range(n)), r.job_id)

    writer = py.spawn(KILLED_WRITER, root)
    try:
        for _ in range(3):  # let it finish a few batches of 5, then kill it in the middle of the run
            line = writer.stdout.readline().strip()
            assert line == "progress", f"the writer did not report progress ({line!r}): {writer.stderr.read()}"
        writer.kill()
        writer.wait(timeout=HANG_GUARD)
    finally:
        stop(writer)
    assert writer.returncode == -9

    rep = ingest(root)
    assert rep.rejected == [] and rep.duplicates == []
    assert len(rep.accepted) < len(want), "the killed writer was expected to have ingested something"

    assert sorted(os.listdir(root / "inbox")) == [".tmp"]
    assert not (root / "ingest.intent").exists()
    assert os.listdir(root / "rejected") == [] and os.listdir(root / "duplicates") == []
    stored = [
        job for day in (root / "store").iterdir() if not day.name.startswith("_") for job in day.iterdir()
    ]  # _segments: compacted copies
    assert sorted(p.name for p in stored) == sorted(v[2] for v in want.values())
    with catalog(root) as con:
        assert con.execute("SELECT count(*), count(DISTINCT job_id) FROM catalog.jobs").fetchone() == (60, 60)
        got = {
            r: (n, s, j)
            for r, n, s, j in con.execute(
                "SELECT _run_id, count(*), sum(qty)::BIGINT, any_value(_job_id) FROM bus.fills GROUP BY ALL"
            ).fetchall()
        }
        assert got == want
    assert ingest(root).accepted == []


READER_LOOP = """
import json, pathlib, sys
from artifact_bus import catalog
root, stop_file = sys.argv[1], pathlib.Path(sys.argv[2])
versions, problems = [], []
print("ready", flush=True)
while True:
    last = stop_file.exists()
    with catalog(root) as con:
        rows, total = con.execute("SELECT count(*), coalesce(sum(qty), 0)::BIGINT FROM bus.fills").fetchone()
        jobs, job_rows, want_total = con.execute(
            "SELECT count(*), coalesce(sum(rows), 0)::BIGINT, "
            "coalesce(sum(700 * replace(run_id, 'r', '')::BIGINT + 21), 0)::BIGINT FROM catalog.jobs").fetchone()
        version = int(con.execute("SELECT value FROM catalog.bus_info WHERE key = 'catalog_version'").fetchone()[0])
    if not (rows == job_rows == 7 * jobs and total == want_total):
        problems.append([version, rows, job_rows, jobs, total, want_total])
    if versions and version < versions[-1]:
        problems.append(["version went back", versions[-1], version])
    versions.append(version)
    if last:
        break
print(json.dumps({"reads": len(versions), "last_jobs": jobs, "problems": problems}), flush=True)
"""


def _seven_rows(j):
    return pa.table({"qty": pa.array([j * 100 + k for k in range(7)], pa.int64())})


def test_readers_polling_during_ingests_always_see_a_whole_snapshot(root, py, tmp_path):
    "Every snapshot a reader opens holds whole jobs only: bus views and catalog tables agree."
    submit(_seven_rows(0), "fills", run_id="r0", root=root)
    ingest(root)
    stop_file = tmp_path / "stop-reading"
    readers = [py.spawn(READER_LOOP, root, stop_file)]
    try:
        for r in readers:
            expect_line(r, "ready")
        j = 1
        for _ in range(8):
            for _ in range(2):
                submit(_seven_rows(j), "fills", run_id=f"r{j}", root=root)
                j += 1
            assert len(ingest(root).accepted) == 2
        stop_file.touch()
        results = []
        for r in readers:
            out, err = r.communicate(timeout=HANG_GUARD)
            assert r.returncode == 0, err
            results.append(json.loads(out.splitlines()[-1]))
    finally:
        for r in readers:
            stop(r)
    for res in results:
        assert res["problems"] == [], res["problems"]
        assert res["reads"] >= 1
        assert res["last_jobs"] == j  # the final read, after the last ingest, sees everything
