"""Many producers, one writer, readers, all at once, as real processes; and two writers racing for the lock.

- 8 producer processes submit at the same time while a writer process ingests in a loop and a reader
  process holds one `catalog()` connection open throughout and keeps opening fresh ones: every job lands
  exactly once, the writer never fails (an open reader never makes it raise), the reader never errors
  and never sees a snapshot whose views disagree with its catalog tables or that goes back in time.
- Two writers released by the same start signal: exactly one ingests, the other gets `WriterBusy` naming
  the winner's pid and host — from Python, and from the CLI (exit code 3, one `error:` line on stderr).

Sizes: ARTIFACT_BUS_CONC_PRODUCERS (8), ARTIFACT_BUS_CONC_JOBS (25 per producer; 200 with ARTIFACT_BUS_SOAK=1).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess

from helpers import clean_env
from reliability_helpers import (
    CLI,
    READER,
    assert_bus_consistent,
    finish,
    kill,
    loops,
    read_line,
    read_log,
    spawn,
    wait_for,
    write_bus_toml,
)

from artifact_bus import submit
from artifact_bus.testing import fills_table

PRODUCERS = loops("ARTIFACT_BUS_CONC_PRODUCERS", 8, 8)
JOBS = loops("ARTIFACT_BUS_CONC_JOBS", 25, 200)
RACE_ATTEMPTS = 3

PRODUCER = """
import json, os, random, sys, time
from artifact_bus import job
from artifact_bus.testing import fills_table
root, go, log, worker, n_jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(worker)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)
for i in range(n_jobs):
    rows = {}
    with job(run_id=f"w{worker}-{i}", producer=f"worker-{worker}", root=root) as j:
        for a in range(rng.randint(1, 2)):
            kind = rng.choice(["fills", "events"])
            n = rng.randint(1, 300)
            t = fills_table(n, seed=worker * 100_000 + i * 10 + a, run_id=f"w{worker}-{i}")
            j.add(kind, t if kind == "fills" else t.select(["ts", "symbol"]))
            rows[kind] = rows.get(kind, 0) + n
    assert j.receipt.status == "committed", j.receipt
    os.write(fd, (json.dumps({"job_id": j.receipt.job_id, "rows": rows}) + "\\n").encode())
    os.fsync(fd)
"""

# Ingests again and again until the stop file appears, then once more (that run sees every job).
WRITER_LOOP = """
import json, os, sys, time, traceback
from artifact_bus import ingest
root, stopfile, errors = sys.argv[1:4]
runs = accepted = 0
try:
    while True:
        last = os.path.exists(stopfile)
        r = ingest(root)
        runs, accepted = runs + 1, accepted + len(r.accepted)
        assert not r.rejected and not r.duplicates, r
        if last:
            break
        time.sleep(0.02)
except BaseException:
    with open(errors, "a") as f:
        f.write(traceback.format_exc())
    sys.exit(1)
print(json.dumps({"runs": runs, "accepted": accepted}), flush=True)
"""


def test_eight_producers_a_writer_loop_and_a_reader_at_once(tmp_path, root):
    write_bus_toml(root, batch_size=20, snapshots_keep=2)
    go, stop_writer, stop_reader = tmp_path / "go", tmp_path / "stop-writer", tmp_path / "stop-reader"
    writer_errors, reader_errors = tmp_path / "writer-errors.txt", tmp_path / "reader-errors.txt"
    logs = [tmp_path / f"producer-{i}.jsonl" for i in range(PRODUCERS)]
    procs = []
    try:
        writer = spawn(WRITER_LOOP, root, stop_writer, writer_errors, cwd=tmp_path)
        procs.append(writer)
        wait_for(lambda: (root / "published" / "CURRENT").exists(), "the first publish", proc=writer)
        reader = spawn(READER, root, reader_errors, stop_reader, cwd=tmp_path)
        procs.append(reader)
        read_line(reader, "holding")
        producers = [spawn(PRODUCER, root, go, logs[i], i, JOBS, cwd=tmp_path) for i in range(PRODUCERS)]
        procs += producers
        for p in producers:
            read_line(p, "ready")
        go.touch()
        for p in producers:
            _, err = finish(p)
            assert p.returncode == 0, err
        stop_writer.touch()
        out, err = finish(writer)
        assert not writer_errors.exists(), f"the writer loop failed:\n{writer_errors.read_text()}"
        assert writer.returncode == 0, err
        stats = json.loads(out.splitlines()[-1])
        stop_reader.touch()
        rout, rerr = finish(reader)
        assert not reader_errors.exists(), f"the reader failed:\n{reader_errors.read_text()[:3000]}"
        assert reader.returncode == 0, rerr
        rstats = json.loads(rout.splitlines()[-1])
    finally:
        for p in procs:
            kill(p)

    acked = {}
    for log in logs:
        for e in read_log(log):
            assert e["job_id"] not in acked, f"two producers got job id {e['job_id']}"
            acked[e["job_id"]] = e["rows"]
    assert len(acked) == PRODUCERS * JOBS
    assert stats["accepted"] == len(acked)
    print(
        f"\n{len(acked)} jobs from {PRODUCERS} producers, {stats['runs']} writer runs, {rstats['queries']} reader "
        f"checks"
    )
    assert rstats["queries"] > 0
    assert_bus_consistent(root, acked)


# --- two writers at once -------------------------------------------------------------------------------

RACER = """
import json, os, sys, time
from artifact_bus import WriterBusy, ingest
root, go = sys.argv[1:3]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    r = ingest(root)
    print(json.dumps({"ok": len(r.accepted)}), flush=True)
except WriterBusy as e:
    print(json.dumps({"busy": str(e)}), flush=True)
"""


def _fill(root, n, start):
    ids = set()
    for i in range(start, start + n):
        ids.add(submit(fills_table(5, seed=i), "fills", run_id=f"race-{i}", root=root).job_id)
    return ids


def _busy_names(msg: str, pid: int) -> bool:
    host = re.escape(socket.gethostname())
    return re.match(rf"^writer already running \(pid {pid}, host {host}, since \S+\)$", msg) is not None


def test_two_writers_started_together_exactly_one_wins(tmp_path, root):
    write_bus_toml(root, batch_size=5)
    all_ids, outcome = set(), None
    for attempt in range(RACE_ATTEMPTS):
        all_ids |= _fill(root, 150, attempt * 1000)
        go = tmp_path / f"go-{attempt}"
        a, b = (spawn(RACER, root, go, cwd=tmp_path) for _ in range(2))
        try:
            read_line(a, "ready")
            read_line(b, "ready")
            go.touch()
            res = {}
            for p in (a, b):
                out, err = finish(p)
                assert p.returncode == 0, err
                res[p.pid] = json.loads(out.splitlines()[-1])
        finally:
            kill(a)
            kill(b)
        oks = [pid for pid, r in res.items() if "ok" in r]
        busy = [pid for pid, r in res.items() if "busy" in r]
        if len(oks) == 2:
            # not a violation if they ran one after the other: then the second found nothing to do
            assert sorted(r["ok"] for r in res.values()) == [0, 150], f"two writers ingested at the same time: {res}"
            continue  # the second started only after the first had finished: race again
        assert len(oks) == 1 and len(busy) == 1, res
        winner, loser = oks[0], busy[0]
        assert res[winner]["ok"] == 150
        assert _busy_names(res[loser]["busy"], winner), (
            f"WriterBusy does not name the winner (pid {winner}): {res[loser]['busy']!r}"
        )
        outcome = res
        break
    assert outcome is not None, f"in {RACE_ATTEMPTS} attempts the two writers never overlapped"
    assert_bus_consistent(root, {j: {"fills": 5} for j in all_ids})


def _cli_racer(root, go, cwd):
    "`artifact-bus ingest`, exec'd by a shell that waits for the start signal: the pid stays the CLI's."
    script = f'while [ ! -e "{go}" ]; do sleep 0.001; done; exec "{CLI}" ingest --root "{root}"'
    return subprocess.Popen(
        ["sh", "-c", script], cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_cli_writers_started_together_exactly_one_wins(tmp_path, root):
    write_bus_toml(root, batch_size=5)
    all_ids, done = set(), False
    for attempt in range(RACE_ATTEMPTS):
        all_ids |= _fill(root, 150, attempt * 1000)
        go = tmp_path / f"go-{attempt}"
        a, b = _cli_racer(root, go, tmp_path), _cli_racer(root, go, tmp_path)
        try:
            go.touch()
            res = {p.pid: (p,) + finish(p) for p in (a, b)}
        finally:
            kill(a)
            kill(b)
        codes = sorted(p.returncode for p, _, _ in res.values())
        if codes == [0, 0]:
            jobs = sorted(int(re.search(r"(\d+) accepted", out).group(1)) for _, out, _ in res.values())
            assert jobs == [0, 150], f"two CLI writers ingested at the same time: {res}"
            continue
        assert codes == [0, 3], {pid: (p.returncode, err) for pid, (p, _, err) in res.items()}
        winner = next(pid for pid, (p, _, _) in res.items() if p.returncode == 0)
        p, out, err = next(v for pid, v in res.items() if pid != winner)
        lines = err.splitlines()
        assert len(lines) == 1, f"stderr must be one line: {err!r}"
        assert lines[0].startswith(
            f"error: writer already running (pid {winner}, host {socket.gethostname()}, since "
        ), lines
        assert "Traceback" not in err
        done = True
        break
    assert done, f"in {RACE_ATTEMPTS} attempts the two CLI writers never overlapped"
    assert_bus_consistent(root, {j: {"fills": 5} for j in all_ids})
