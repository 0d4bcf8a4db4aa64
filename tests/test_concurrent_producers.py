"""Many producer processes submitting at once, then one ingest: every row is accounted for exactly once."""

from __future__ import annotations

import json
import os

from helpers import HANG_GUARD, expect_line, stop

from artifact_bus import catalog, ingest

WORKERS, JOBS_PER_WORKER = 4, 50

# Each producer imports the library, says "ready", waits for "go" (so all of them really submit at the
# same time), submits its jobs and logs one JSON line per job: run_id, job_id, rows and the sum of qty.
# With a chunk size it waits for another "go" before each further chunk of jobs.
PRODUCER = """
import json, sys
import pyarrow as pa
from artifact_bus import submit

root, worker, n_jobs, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("ready", flush=True)
for i in range(n_jobs):
    if i % chunk == 0:
        assert sys.stdin.readline().strip() == "go"
    run_id = f"w{worker}-{i:03d}"
    n = 1 + (worker * 31 + i * 7) % 23                       # 1..23 rows, different per job
    qty = [worker * 1_000_000 + i * 1_000 + k for k in range(n)]
    t = pa.table({"run": [run_id] * n, "qty": pa.array(qty, pa.int64()),
                  "price": pa.array([0.5 * k for k in range(n)], pa.float64())})
    r = submit(t, "fills", run_id=run_id, producer=f"worker-{worker}", root=root)
    print(json.dumps({"run_id": run_id, "job_id": r.job_id, "rows": n, "sum": sum(qty), "status": r.status}),
          flush=True)
print("done", flush=True)
"""


def test_four_producers_two_hundred_jobs_one_ingest(root, py):
    procs = [py.spawn(PRODUCER, root, w, JOBS_PER_WORKER, JOBS_PER_WORKER) for w in range(WORKERS)]
    try:
        for p in procs:
            expect_line(p, "ready")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        logged = []
        for p in procs:
            out, err = p.communicate(timeout=HANG_GUARD)
            assert p.returncode == 0, err
            lines = out.splitlines()
            assert lines[-1] == "done", err
            logged += [json.loads(line) for line in lines[:-1]]
    finally:
        for p in procs:
            stop(p)

    assert len(logged) == WORKERS * JOBS_PER_WORKER
    assert {x["status"] for x in logged} == {"committed"}
    assert len({x["job_id"] for x in logged}) == len(logged), "two producers got the same job id"
    assert len({x["run_id"] for x in logged}) == len(logged)

    # every job is committed in the inbox, nothing is left half-written
    inbox = root / "inbox"
    assert sorted(n for n in os.listdir(inbox) if n != ".tmp") == sorted(x["job_id"] for x in logged)
    assert os.listdir(inbox / ".tmp") == []

    rep = ingest(root)
    assert sorted(rep.accepted) == sorted(x["job_id"] for x in logged)
    assert len(rep.accepted) == WORKERS * JOBS_PER_WORKER
    assert rep.rejected == [] and rep.duplicates == []
    assert sorted(os.listdir(inbox)) == [".tmp"]
    assert os.listdir(inbox / ".tmp") == []

    want = {x["run_id"]: (x["rows"], x["sum"], x["job_id"]) for x in logged}
    with catalog(root) as con:
        got = con.execute("""
            SELECT _run_id, count(*), sum(qty)::BIGINT, any_value(_job_id), count(DISTINCT _job_id),
                   bool_and(run = _run_id)
            FROM bus.fills GROUP BY _run_id""").fetchall()
        assert len(got) == len(want)
        for run_id, n, total, job_id, n_jobs, consistent in got:
            assert (n, total, job_id) == want[run_id], run_id
            assert n_jobs == 1 and consistent, run_id
        assert con.execute("SELECT count(*), sum(rows) FROM catalog.jobs WHERE status = 'accepted'").fetchone() == (
            len(want),
            sum(x["rows"] for x in logged),
        )
        assert con.execute("SELECT count(*) FROM catalog.rejections").fetchone()[0] == 0
        assert con.execute("SELECT rows FROM catalog.kinds WHERE kind = 'fills'").fetchone()[0] == sum(
            x["rows"] for x in logged
        )
        # nothing is counted twice: the order-independent checks above plus a global total
        assert (
            con.execute("SELECT count(*), count(DISTINCT qty) FROM bus.fills").fetchone()
            == (sum(x["rows"] for x in logged),) * 2
        )

    # a second ingest finds nothing new and changes nothing
    again = ingest(root)
    assert again.accepted == [] and again.rejected == [] and again.duplicates == []


# An ingest loop in its own process, running while the producers write: it must never pick up a job
# that is still being written, and never catalog one twice. It reports each run on a line of its own.
INGESTER = """
import json, sys, pathlib
from artifact_bus import ingest
root, stop_file = sys.argv[1], pathlib.Path(sys.argv[2])
accepted, rejected, runs = [], [], 0
print("ready", flush=True)
while True:
    last = stop_file.exists()      # one more full pass after the stop signal
    rep = ingest(root)
    runs += 1
    accepted += rep.accepted
    rejected += rep.rejected
    print(json.dumps({"run": runs, "accepted": len(accepted)}), flush=True)
    if last:
        break
print(json.dumps({"accepted": accepted, "rejected": rejected, "runs": runs}), flush=True)
"""


def test_ingest_running_while_producers_submit(root, py, tmp_path):
    stop_file = tmp_path / "stop-ingesting"
    half = JOBS_PER_WORKER // 2
    producers = [py.spawn(PRODUCER, root, w, JOBS_PER_WORKER, half) for w in range(WORKERS)]
    ingester = py.spawn(INGESTER, root, stop_file)
    try:
        for p in [*producers, ingester]:
            expect_line(p, "ready")
        for p in producers:
            p.stdin.write("go\n")
            p.stdin.flush()
        # let the ingester accept part of the first half before the second half starts
        while True:
            line = ingester.stdout.readline()
            assert line, ingester.stderr.read()
            if json.loads(line)["accepted"] > 0:
                break
        for p in producers:
            p.stdin.write("go\n")
            p.stdin.flush()
        logged = []
        for p in producers:
            out, err = p.communicate(timeout=HANG_GUARD)
            assert p.returncode == 0, err
            assert out.splitlines()[-1] == "done", err
            logged += [json.loads(line) for line in out.splitlines()[:-1]]
        stop_file.touch()
        out, err = ingester.communicate(timeout=HANG_GUARD)
        assert ingester.returncode == 0, err
        looped = json.loads(out.splitlines()[-1])
    finally:
        for p in [*producers, ingester]:
            stop(p)

    assert looped["runs"] >= 2
    assert looped["rejected"] == [], looped["rejected"]
    final = ingest(root)  # whatever the loop did not see
    assert final.rejected == []
    accepted = looped["accepted"] + final.accepted
    assert len(accepted) == len(set(accepted)), "a job was accepted twice"
    assert sorted(accepted) == sorted(x["job_id"] for x in logged)
    assert sorted(os.listdir(root / "inbox")) == [".tmp"]
    assert os.listdir(root / "inbox" / ".tmp") == []

    want = {x["run_id"]: (x["rows"], x["sum"]) for x in logged}
    with catalog(root) as con:
        got = {
            r: (n, s)
            for r, n, s in con.execute(
                "SELECT _run_id, count(*), sum(qty)::BIGINT FROM bus.fills GROUP BY _run_id"
            ).fetchall()
        }
        assert got == want
        assert con.execute("SELECT count(*), count(DISTINCT job_id) FROM catalog.jobs").fetchone() == (len(want),) * 2
