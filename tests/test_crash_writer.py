"""The single writer killed with SIGKILL at any instant loses nothing, duplicates nothing, and the next run
finishes the work — while readers keep reading.

The durability loop: a producer process submits jobs (logging each acknowledged job id and its rows);
then, again and again, a real writer process (`ingest(root)`, small batch_size so one run is many
batches, transactions and publishes, then exports) is started and SIGKILLed after a random delay drawn
uniformly over the duration of a clean run — so kills land in validation, moves, the DuckDB
transaction, publishing and the exports. A reader process holds one `catalog()` connection open across
the whole loop and keeps opening fresh ones. After a final clean run: every acknowledged job is
cataloged exactly once with its rows, store and catalog agree, `doctor()` finds no problem, export files
are readable, no temporary file is left, and the reader never saw an error. Kills aimed at an event (the
export phase, the intent journal, an atomic write, a compaction) pin down the windows a random kill only
sometimes hits.

Loop count: ARTIFACT_BUS_WRITER_KILLS (default 25, 300 with ARTIFACT_BUS_SOAK=1).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from reliability_helpers import (
    READER,
    WRITER,
    assert_bus_consistent,
    assert_exports_fresh,
    doctor_problems,
    export_outputs,
    finish,
    inbox_jobs,
    kill,
    loops,
    read_line,
    read_log,
    readable_parquet,
    segment_files,
    spawn,
    store_jobs,
    temp_names,
    wait_for,
    write_bus_toml,
)

from artifact_bus import catalog, ingest, submit
from artifact_bus.testing import fills_table

KILLS = loops("ARTIFACT_BUS_WRITER_KILLS", 25, 300)
JOBS_PER_ROUND = loops("ARTIFACT_BUS_WRITER_JOBS_PER_ROUND", 12, 30)
SEED = int(os.environ.get("ARTIFACT_BUS_TEST_SEED", random.randrange(1 << 30)))
KNOWN_BUG_LEFTOVER = re.compile(
    r"^(published/\.CURRENT|\.ingest\.intent|exports/\._export_status\.json)\.\d+\.tmp$"
    r"|^exports/\.[^/]+\.parquet\.tmp$"
)

# Long-lived producer: "fill K" on stdin submits K jobs, each acknowledged in the log (fsync) before "filled".
PRODUCER = """
import json, os, random, sys
from artifact_bus import job
from artifact_bus.testing import fills_table
root, log, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
i = 0
print("ready", flush=True)
for cmd in sys.stdin:
    for _ in range(int(cmd.split()[1])):
        i += 1
        rows = {}
        with job(run_id=f"r{i}", producer="durability-producer", root=root) as j:
            for a in range(rng.randint(1, 3)):
                kind = rng.choice(["fills", "fills", "events", "positions"])
                n = rng.randint(1, 500)
                t = fills_table(n, seed=i * 10 + a, run_id=f"r{i}")
                if kind != "fills":
                    t = t.select(["ts", "symbol", "qty"])
                j.add(kind, t)
                rows[kind] = rows.get(kind, 0) + n
        assert j.receipt.status == "committed"
        os.write(fd, (json.dumps({"job_id": j.receipt.job_id, "rows": rows}) + "\\n").encode())
        os.fsync(fd)
    print("filled", flush=True)
"""


def _after_kill_invariants(root: Path) -> None:
    "What must hold at any instant, even right after a kill."
    both = inbox_jobs(root) & set(store_jobs(root))
    assert not both, f"jobs both in the inbox and the store: {sorted(both)[:3]}"
    for f in export_outputs(root):
        readable_parquet(f)  # old or new, never torn
    cur = json.loads((root / "published" / "CURRENT").read_text())
    assert (root / "published" / cur["snapshot"]).is_file()


def _phase(root: Path, tmp_before: list[str]) -> str:
    "Roughly where a kill landed, from what it left behind."
    new_tmp = set(temp_names(root)) - set(tmp_before)
    if (root / "ingest.intent").exists():
        return "mid-batch"
    if any(n.startswith("exports/") for n in new_tmp):
        return "mid-export"
    if any(n.startswith("published/") for n in new_tmp):
        return "mid-publish"
    return "between"


def _fill(producer, k):
    producer.stdin.write(f"fill {k}\n")
    producer.stdin.flush()
    read_line(producer, "filled")


def _timed_clean_run(root, cwd) -> float:
    w = spawn(WRITER, root, cwd=cwd)
    read_line(w, "ready")
    t0 = time.monotonic()
    out, err = finish(w)
    assert w.returncode == 0, err
    return time.monotonic() - t0


def kill_writer_when(root, cwd, folder, appeared) -> int:
    """Run a writer on `root` and SIGKILL it the moment an entry of `folder` satisfies `appeared(name)`;
    return its exit code (0: it finished before, -9: killed)."""
    w = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        while w.poll() is None:
            try:
                if any(appeared(n) for n in os.listdir(folder)):
                    os.kill(w.pid, signal.SIGKILL)
                    break
            except FileNotFoundError:
                pass
    finally:
        rc = kill(w)
    assert rc in (0, -9), w.stderr.read()
    return rc


def test_writer_killed_at_random_instants_with_a_reader_holding_the_catalog(tmp_path, root):
    rng = random.Random(SEED)
    print(f"\nARTIFACT_BUS_TEST_SEED={SEED}")
    write_bus_toml(root, batch_size=3, snapshots_keep=2)
    log, errors, stopfile = tmp_path / "acked.jsonl", tmp_path / "reader-errors.txt", tmp_path / "stop-reader"
    producer = spawn(PRODUCER, root, log, SEED, cwd=tmp_path, stdin=subprocess.PIPE)
    reader = None
    try:
        read_line(producer, "ready")
        _fill(producer, JOBS_PER_ROUND)
        clean = _timed_clean_run(root, tmp_path)  # also the first publish: the reader can start
        reader = spawn(READER, root, errors, stopfile, cwd=tmp_path)
        read_line(reader, "holding")

        kills, completed, phases, t0 = 0, 0, {}, time.monotonic()
        while kills < KILLS and kills + completed < 4 * KILLS:
            if len(inbox_jobs(root)) < JOBS_PER_ROUND:  # keep each run about the size of the measured one
                _fill(producer, JOBS_PER_ROUND)
            tmp_before = temp_names(root)
            w = spawn(WRITER, root, cwd=tmp_path)
            read_line(w, "ready")
            t_ready = time.monotonic()
            time.sleep(rng.uniform(0, clean))
            rc = kill(w)
            if rc == -9:
                kills += 1
                _after_kill_invariants(root)
                phase = _phase(root, tmp_before)
                phases[phase] = phases.get(phase, 0) + 1
            else:
                assert rc == 0, f"the writer failed by itself (exit {rc}):\n{w.stderr.read()}"
                completed += 1
                clean = time.monotonic() - t_ready  # the machine got faster: a clean run takes at most this now
        assert kills == KILLS, f"only {kills} of {kills + completed} writers were still running when killed"
        print(
            f"{kills} writer kills, {completed} runs completed before their kill, in {time.monotonic() - t0:.1f}s "
            f"(clean run {clean:.2f}s); where the kills landed: {phases}"
        )

        # the reader saw every kill and never failed
        stopfile.touch()
        out, err = finish(reader)
        assert reader.returncode == 0, err
        assert not errors.exists(), f"the reader failed:\n{errors.read_text()[:3000]}"
        assert json.loads(out.splitlines()[-1])["queries"] > 0
        finish(producer)  # closes its stdin: it exits
        assert producer.returncode == 0
    finally:
        kill(producer)
        if reader is not None:
            kill(reader)

    # one final clean run finishes the work
    w = spawn(WRITER, root, cwd=tmp_path)
    out, err = finish(w)
    assert w.returncode == 0, err
    acked = {e["job_id"]: e["rows"] for e in read_log(log)}
    assert inbox_jobs(root) == set(), "jobs left in the inbox after a clean run"
    assert_bus_consistent(root, acked, orphan_segments_ok=True)
    for d in ("rejected", "duplicates"):
        left = sorted(os.listdir(root / d))
        reasons = [
            (root / d / n / "reason.json").read_text()[:600] for n in left if (root / d / n / "reason.json").exists()
        ]
        assert left == [], f"{d}/ after crashes of a correct writer: {left[:5]} {reasons[:3]}"
    assert not (root / "ingest.intent").exists()
    for f in export_outputs(root):
        readable_parquet(f)  # old or new
    # Symptoms of known bugs, each pinned by its own aimed test, are reported here as a warning but do not
    # fail this loop (else it would fail at random, whenever the last kill happened to hit them): temp files
    # of a killed atomic_write; exports left stale by a kill after the last committed batch but before the
    # exports journal; an orphan segment left by a kill inside compaction.
    known = [n for n in temp_names(root) if KNOWN_BUG_LEFTOVER.match(n)]
    assert sorted(set(temp_names(root)) - set(known)) == [], f"temporary files left behind: {temp_names(root)}"
    try:
        assert_exports_fresh(root)
    except AssertionError as e:
        known.append(f"stale exports: {e}")
    with catalog(root) as con:
        segs = {r[0] for r in con.execute("SELECT path FROM catalog.segments").fetchall()}
    known += [f"orphan segment {p}" for p in sorted(segment_files(root) - segs)]
    if known:
        warnings.warn(
            f"known bugs hit by this loop (see test_kill_inside_an_atomic_write_..., "
            f"test_kill_during_compaction_leaves_no_orphan_segment, "
            f"test_kill_during_compaction_still_regenerates_exports): {known}"
        )


# A user export that takes a while, so a kill can be aimed at the export phase by watching for its
# temporary file (an event, not a delay).
SLOW_EXPORT = """-- inputs: catalog.jobs
SELECT (SELECT count(*) FROM catalog.jobs) AS jobs, count(*) AS n FROM range(150000000) t(i) WHERE i % 7 = 3
"""


def test_writer_killed_during_exports_resumes_them(tmp_path, root):
    exports = tmp_path / "my_exports"
    exports.mkdir()
    (exports / "slow.sql").write_text(SLOW_EXPORT)
    write_bus_toml(root, exports=[exports])
    acked = {}
    for i in range(2):
        r = submit(fills_table(10 + i, seed=i), "fills", root=root)
        acked[r.job_id] = {"fills": 10 + i}
    ingest(root)
    assert readable_parquet(root / "exports" / "slow.parquet") == 1

    for i in range(2, 4):
        r = submit(fills_table(10 + i, seed=i), "fills", root=root)
        acked[r.job_id] = {"fills": 10 + i}
    w = spawn(WRITER, root, cwd=tmp_path)
    wait_for(lambda: (root / "exports" / ".slow.parquet.tmp").exists(), "the slow export to start", poll=0.002, proc=w)
    assert kill(w) == -9
    # at this instant the export is old but whole, and the catalog already has the new jobs
    assert pq.read_table(root / "exports" / "slow.parquet").to_pylist()[0]["jobs"] == 2

    w = spawn(WRITER, root, cwd=tmp_path)
    out, err = finish(w)
    assert w.returncode == 0, err
    assert_bus_consistent(root, acked)
    got = pq.read_table(root / "exports" / "slow.parquet").to_pylist()[0]["jobs"]
    status = json.loads((root / "exports" / "_export_status.json").read_text()).get("slow", {})
    problems = []
    if got != 4:
        problems.append(f"exports/slow.parquet still reflects {got} jobs, the catalog has 4")
    if status.get("status") != "ok" or status.get("generated_at") is None:
        problems.append(f"its status is {status}")
    if temp_names(root):
        problems.append(f"temporary files are left: {temp_names(root)}")
    assert not problems, (
        "after a writer was killed during the exports, the next clean run did not finish them: " + "; ".join(problems)
    )


def test_writer_killed_mid_batch_is_recovered(tmp_path, root):
    "Kill as soon as the intent journal appears (moves and transaction under way); the next run recovers."
    write_bus_toml(root, batch_size=400)
    acked, hit = {}, False
    ingest(root)  # the first publish, so the state can be inspected after the kill
    for attempt in range(5):
        for i in range(120):
            r = submit(fills_table(1 + i % 7, seed=attempt * 1000 + i), "fills", root=root)
            acked[r.job_id] = {"fills": 1 + i % 7}
        w = spawn(WRITER, root, cwd=tmp_path)
        try:
            while w.poll() is None and not (root / "ingest.intent").exists():
                time.sleep(0.001)
        finally:
            hit = kill(w) == -9
        if hit:
            break  # else the whole batch went through before we saw its journal: try a bigger one
    if not hit:
        pytest.skip("in 5 runs the writer never was still running when its intent journal appeared")
    _after_kill_invariants(root)
    if (root / "ingest.intent").exists():
        assert any("interrupted" in p for p in doctor_problems(root)), doctor_problems(root)
    rep = ingest(root)
    assert rep.rejected == [] and rep.duplicates == []
    assert_bus_consistent(root, acked)
    assert not (root / "ingest.intent").exists()
    assert temp_names(root) == []
    assert_exports_fresh(root)


def test_doctor_accepts_compacted_segments(root):
    """The oracle itself: after a plain ingest that compacts (32 small artifacts of a kind, the default
    threshold), `doctor()` must not report the segment folder as an orphan job folder — nor advise
    moving it back into the inbox."""
    for i in range(32):
        submit(fills_table(5, seed=i), "fills", root=root)
    rep = ingest(root)
    assert rep.compacted == 1
    assert doctor_problems(root) == []


@pytest.mark.parametrize(
    "folder, prefix", [("published", ".CURRENT."), (".", ".ingest.intent."), ("exports", "._export_status.json.")]
)
def test_kill_inside_an_atomic_write_leaves_no_temporary_file_after_the_next_run(tmp_path, root, folder, prefix):
    """Aim a SIGKILL at the short life of an atomic_write() temporary file (`<folder>/<prefix><pid>.tmp`,
    seen in the random loop): watch for it and kill the writer the moment it appears. If the kill landed
    while it existed, the next clean run must leave no such file."""
    write_bus_toml(root, batch_size=1)
    where = root / folder
    acked, left = {}, []
    for attempt in range(10):
        for i in range(30):
            r = submit(fills_table(3, seed=attempt * 100 + i), "fills", root=root)
            acked[r.job_id] = {"fills": 3}
        kill_writer_when(root, tmp_path, where, lambda n: n.startswith(prefix))
        left = [n for n in os.listdir(where) if n.startswith(prefix)]
        if left:
            break
    if not left:
        pytest.skip(f"in 10 runs no kill landed inside the atomic write of {folder}/{prefix}*: nothing to check")
    w = spawn(WRITER, root, cwd=tmp_path)
    out, err = finish(w)
    assert w.returncode == 0, err
    assert_bus_consistent(root, acked)
    still = [n for n in os.listdir(where) if n.startswith(prefix)]
    assert still == [], (
        f"a killed atomic_write left {folder}/{still[0]} behind, and the next clean run did not remove it"
    )


def test_kill_during_compaction_leaves_no_orphan_segment(tmp_path, root):
    """Aim a SIGKILL at compaction: the moment a new segment file is renamed into store/_segments/<kind>/
    (before the transaction that catalogs it). If the kill left a segment file the catalog does not know,
    the next clean run must remove it (it holds a full copy of the compacted rows)."""
    seg_dir = root / "store" / "_segments" / "fills"
    acked, orphans = {}, set()
    for attempt in range(8):
        for i in range(34):  # above compact_min_files (32): every run compacts
            r = submit(fills_table(3, seed=attempt * 100 + i), "fills", root=root)
            acked[r.job_id] = {"fills": 3}
        before = set(os.listdir(seg_dir)) if seg_dir.is_dir() else set()
        kill_writer_when(root, tmp_path, seg_dir, lambda n: not n.startswith(".") and n not in before)
        con = duckdb.connect(str(root / "artifact_bus.duckdb"), read_only=True)
        try:
            known = {r[0] for r in con.execute("SELECT path FROM catalog.segments").fetchall()}
        finally:
            con.close()
        orphans = segment_files(root) - known
        if orphans:
            break
    if not orphans:
        pytest.skip("in 8 runs no kill landed between a segment's rename and its commit: nothing to check")
    w = spawn(WRITER, root, cwd=tmp_path)
    out, err = finish(w)
    assert w.returncode == 0, err
    assert_bus_consistent(root, acked, orphan_segments_ok=True)
    left = segment_files(root) & orphans
    assert not left, (
        f"a writer killed during compaction left {sorted(left)[0]} (not in catalog.segments), "
        f"and the next clean run did not remove it"
    )


def test_kill_during_compaction_still_regenerates_exports(tmp_path, root):
    """A writer killed while compacting — after its batches are committed and published, before the
    exports — leaves exports that miss the committed jobs; the next clean run must regenerate them."""
    seg_dir = root / "store" / "_segments" / "fills"
    acked, hit = {}, False
    for attempt in range(8):
        for i in range(34):  # above compact_min_files (32): every run compacts
            r = submit(fills_table(3, seed=attempt * 100 + i), "fills", root=root)
            acked[r.job_id] = {"fills": 3}
        # kill while the segment is being written: the batches are committed by then
        rc = kill_writer_when(root, tmp_path, seg_dir, lambda n: n.startswith(".") and n.endswith(".parquet.tmp"))
        if rc == -9:
            hit = True
            break
    if not hit:
        pytest.skip("in 8 runs no kill landed while a segment was being written")
    w = spawn(WRITER, root, cwd=tmp_path)
    out, err = finish(w)
    assert w.returncode == 0, err
    assert_bus_consistent(root, acked, orphan_segments_ok=True)
    assert_exports_fresh(root)
