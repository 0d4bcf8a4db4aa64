"""A producer killed with SIGKILL at random instants never makes a partial job visible, and never loses a
job it was told was saved.

A child process submits multi-artifact jobs with `job()` in a loop — or, in the batch variant, a few at a
time inside `batch()`, which commits them together — and, only after the receipt is returned, appends
the job id (and its rows per kind) to a log with write+fsync. The parent SIGKILLs it
after a random delay, many times over. Then:
- every entry of inbox/ is a complete committed job (`validate_job` passes) — partial writes may sit
  in inbox/.tmp/ only, and are never visible or ingested;
- every acknowledged job is in the inbox;
- one ingest catalogs every acknowledged job exactly once, with exactly its rows, and rejects nothing.

Loop count: ARTIFACT_BUS_PRODUCER_KILLS (default 20, 200 with ARTIFACT_BUS_SOAK=1).
"""

from __future__ import annotations

import os
import random
import time

import pytest
from reliability_helpers import (
    assert_bus_consistent,
    doctor_problems,
    inbox_jobs,
    kill,
    loops,
    read_line,
    read_log,
    spawn,
    tmp_entries,
    wait_for,
    write_bus_toml,
)

from artifact_bus import ingest
from artifact_bus.protocol import Rejection, validate_job

KILLS = loops("ARTIFACT_BUS_PRODUCER_KILLS", 20, 200)
SEED = int(os.environ.get("ARTIFACT_BUS_TEST_SEED", random.randrange(1 << 30)))

PRODUCER = """
import contextlib, json, os, random, sys
from artifact_bus import batch, job
from artifact_bus.testing import fills_table
root, log, seed, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rng = random.Random(seed)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
print("ready", flush=True)
i = 0
while True:
    done = []
    with (batch(root=root) if mode == "batch" else contextlib.nullcontext()) as b:
        for _ in range(rng.randint(1, 5) if mode == "batch" else 1):
            i += 1
            rows = {}
            where = {} if b else {"root": root}
            with (b.job if b else job)(run_id=f"p{seed}-{i}", producer="crash-producer", **where) as j:
                for a in range(rng.randint(1, 3)):
                    kind = rng.choice(["fills", "fills", "events"])
                    n = rng.randint(1, 20_000)
                    t = fills_table(n, seed=seed * 1000 + i * 10 + a, run_id=f"p{seed}-{i}")
                    if kind == "events":
                        t = t.select(["ts", "symbol", "qty"])
                    j.add(kind, t)
                    rows[kind] = rows.get(kind, 0) + n
            done.append((j, rows))
    for j, rows in done:   # acknowledged only once the receipt exists: for a batch, after it committed
        line = json.dumps({"job_id": j.receipt.job_id, "status": j.receipt.status, "rows": rows}) + "\\n"
        os.write(fd, line.encode())
    os.fsync(fd)
"""


@pytest.mark.parametrize("mode", ["job", "batch"])
def test_producer_killed_at_random_instants(tmp_path, root, mode):
    rng = random.Random(SEED)
    write_bus_toml(root, batch_size=50)
    log = tmp_path / "acked.jsonl"
    print(f"\nARTIFACT_BUS_TEST_SEED={SEED}")
    # Calibrate on this machine, now: how long does a producer take to acknowledge its first 8 jobs? The
    # random kill instants are drawn over that span (whatever the load), and the log is never empty.
    p = spawn(PRODUCER, root, log, SEED % 1000 * 1000 + 999, mode, cwd=tmp_path)
    try:
        read_line(p, "ready")
        t_ready = time.monotonic()
        wait_for(lambda: len(read_log(log)) >= 8, "8 acknowledged jobs", poll=0.002, proc=p)
        span = time.monotonic() - t_ready
    finally:
        assert kill(p) == -9
    t0 = time.monotonic()
    for k in range(KILLS):
        p = spawn(PRODUCER, root, log, k + SEED % 1000 * 1000, mode, cwd=tmp_path)
        try:
            read_line(p, "ready")
            before = len(read_log(log))
            time.sleep(rng.uniform(0.0, span))  # a random instant, not an assertion
        finally:
            rc = kill(p)
        assert rc == -9, f"the producer died by itself (exit {rc}): {p.stderr.read()}"
        # the invariant holds after every single kill, not only at the end
        for name in inbox_jobs(root):
            validate_job(root / "inbox" / name)
        assert len(read_log(log)) >= before
    print(
        f"{KILLS} kills over spans of {span:.2f}s in {time.monotonic() - t0:.1f}s, {len(read_log(log))} jobs "
        f"acknowledged, "
        f"{len(tmp_entries(root))} partial jobs left in inbox/.tmp"
    )

    acked = {e["job_id"]: e["rows"] for e in read_log(log)}
    assert {e["status"] for e in read_log(log)} == {"committed"}
    assert len(acked) == len(read_log(log)), "a job id was acknowledged twice"

    # 1. every visible inbox entry is a complete committed job; partial ones live in .tmp only
    visible = inbox_jobs(root)
    for name in visible:
        try:
            validate_job(root / "inbox" / name)
        except Rejection as r:
            raise AssertionError(f"a partial job is visible in the inbox: {name}: {r.code}: {r}") from None
    partial = tmp_entries(root)
    assert not (partial & visible), f"jobs both in progress and committed: {partial & visible}"
    assert not (partial & set(acked)), f"acknowledged jobs still in progress: {partial & set(acked)}"

    # 2. nothing acknowledged was lost
    assert set(acked) <= visible, f"acknowledged jobs missing from the inbox: {sorted(set(acked) - visible)[:5]}"

    # 3. ingest: every committed job exactly once, nothing rejected, in-progress entries untouched
    rep = ingest(root)
    assert rep.rejected == [] and rep.duplicates == []
    assert sorted(rep.accepted) == sorted(visible)
    assert tmp_entries(root) == partial, "ingest touched in-progress jobs"
    # committed-but-not-yet-acknowledged jobs (killed between the rename and the log line) are fine
    assert_bus_consistent(root, acked, may_have=visible - set(acked))
    assert ingest(root).accepted == []

    # 4. the partial leftovers are reaped once they are older than tmp_max_age; nothing else changes
    old = time.time() - 3600
    for n in partial:
        os.utime(root / "inbox" / ".tmp" / n, (old, old))
    write_bus_toml(root, batch_size=50, tmp_max_age=60)
    rep = ingest(root)
    assert rep.accepted == [] and rep.rejected == []
    assert tmp_entries(root) == set()
    assert_bus_consistent(root, acked, may_have=visible - set(acked))
    assert doctor_problems(root, known_false_positives=True) == []
