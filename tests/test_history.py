"""The catalog's history, with real processes: time travel returns exactly what a reader saw at that
version; `gc` never breaks a reader holding a version open nor a version it keeps; a writer killed with
SIGKILL during `retire` or `gc` loses nothing (publishing under kill -9 is test_crash_writer's).

Loop count: ARTIFACT_BUS_HISTORY_KILLS (default 6 per operation, 60 with ARTIFACT_BUS_SOAK=1).
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest
from reliability_helpers import doctor_problems, finish, kill, loops, read_line, read_log, spawn, write_bus_toml

from artifact_bus import catalog, ingest, submit
from artifact_bus.catalog import TimeTravelUnavailable
from artifact_bus.core import NotFound
from artifact_bus.gc import gc
from artifact_bus.retire import retire

KILLS = loops("ARTIFACT_BUS_HISTORY_KILLS", 6, 60)
SEED = random.randrange(1 << 30)

# What a reader sees in one version: every kind's rows per job, every job's status, the retirements.
FINGERPRINT = """
def fingerprint(con):
    kinds = [k for (k,) in con.execute("SELECT DISTINCT kind FROM catalog.artifacts ORDER BY 1").fetchall()]
    out = {"version": con.execute("SELECT max(version) FROM catalog.versions").fetchone()[0]}
    for k in kinds:
        out[k] = [list(r) for r in con.execute(
            f"SELECT _job_id, _run_id, count(*), sum(qty) FROM bus.{k} GROUP BY ALL ORDER BY ALL").fetchall()]
    out["jobs"] = [list(r) for r in con.execute("SELECT job_id, status FROM catalog.jobs ORDER BY 1").fetchall()]
    out["retired"] = [r[0] for r in con.execute("SELECT job_id FROM catalog.retirements ORDER BY 1").fetchall()]
    return out
"""
ns: dict = {}
exec(FINGERPRINT, ns)
fingerprint = ns["fingerprint"]

# Keeps opening the current version and logs what it saw, until told to stop.
WATCHER = (
    """
import json, os, sys, time
from artifact_bus import catalog
root, log, stopfile = sys.argv[1:4]
"""
    + FINGERPRINT
    + """
print("ready", flush=True)
seen = set()
with open(log, "a") as f:
    while not os.path.exists(stopfile):
        with catalog(root) as con:
            fp = fingerprint(con)
        if fp["version"] not in seen:
            seen.add(fp["version"])
            f.write(json.dumps(fp) + "\\n")
            f.flush()
        time.sleep(0.01)
"""
)

# Holds one version open (by number) and answers "read" on stdin with what it sees in it.
HOLDER = (
    """
import json, sys
from artifact_bus import catalog
root, version = sys.argv[1], int(sys.argv[2])
"""
    + FINGERPRINT
    + """
con = catalog(root, as_of=version)
print(json.dumps(fingerprint(con)), flush=True)
for line in sys.stdin:
    print(json.dumps(fingerprint(con)), flush=True)
"""
)


def _fills(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    return pa.table(
        {"symbol": [rng.choice("ABCD") for _ in range(n)], "qty": [float(rng.randint(1, 99)) for _ in range(n)]}
    )


def _round(root: Path, i: int, rng: random.Random) -> None:
    "Some jobs in, sometimes a run out."
    for j in range(rng.randint(1, 3)):
        submit(_fills(rng.randint(1, 20), i * 10 + j), "fills", run_id=f"run-{i}", root=root)
    ingest(root)
    if i > 1 and rng.random() < 0.4:
        victim = f"run-{rng.randrange(i)}"
        try:
            retire(root, run_id=victim, reason=f"round {i}")
        except Exception as e:  # already retired: fine
            assert "nothing to retire" in str(e), e


def _versions(root: Path) -> list[int]:
    with catalog(root) as con:
        return [v for (v,) in con.execute("SELECT version FROM catalog.versions WHERE expired_at IS NULL").fetchall()]


def _read_everything(root: Path, version: int) -> None:
    "Every table and view of a version reads to the end (every file it names is there)."
    with catalog(root, as_of=version) as con:
        for schema, name in con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal AND schema_name IN ('bus', 'catalog')"
        ).fetchall():
            con.execute(f"SELECT * FROM {schema}.{name}").fetchall()


def test_time_travel_returns_exactly_what_a_reader_saw(root, tmp_path):
    rng = random.Random(SEED)
    log, stop = tmp_path / "seen.jsonl", tmp_path / "stop"
    submit(_fills(3, 0), "fills", run_id="run-0", root=root)
    ingest(root)
    watcher = spawn(WATCHER, root, log, stop)
    read_line(watcher, "ready")
    try:
        for i in range(1, 10):
            _round(root, i, rng)
            time.sleep(0.05)  # let the watcher see most versions
    finally:
        stop.touch()
        out, err = finish(watcher)
    assert watcher.returncode == 0, err
    seen = read_log(log)
    assert len(seen) >= 3, f"the reader saw only {len(seen)} versions (seed {SEED})"
    for fp in seen:
        with catalog(root, as_of=fp["version"]) as con:
            assert fingerprint(con) == fp, f"version {fp['version']} differs from what a reader saw (seed {SEED})"


def test_gc_never_breaks_an_open_reader_or_a_kept_version(root):
    write_bus_toml(root, retain_versions=2, retain_days=0, retain_retired_days=0, compact_min_files=2)
    rng = random.Random(SEED)
    for i in range(4):
        _round(root, i, rng)
    old = _versions(root)[0]
    holder = spawn(HOLDER, root, old, stdin=subprocess.PIPE)
    try:
        before = json.loads(holder.stdout.readline())
        for i in range(4, 8):
            _round(root, i, rng)
        with contextlib.suppress(NotFound):  # a run the held version does not show, retired since (unless already)
            retire(root, run_id="run-5", reason="bad")
        report = gc(root)
        assert report.removals, report
        assert f"snap-v{old:012d}.duckdb" in report.in_use, report
        holder.stdin.write("read\n")
        holder.stdin.flush()
        assert json.loads(holder.stdout.readline()) == before, "gc changed what a reader holding a version sees"
        kept = _versions(root)
        assert old in kept
        for v in kept:  # every kept version reads whole
            _read_everything(root, v)
    finally:
        holder.stdin.close()
        err = holder.stderr.read()
        holder.wait(timeout=60)
    assert holder.returncode == 0, err
    report = gc(root)  # the reader is gone: its version goes now
    assert old not in _versions(root), report
    with pytest.raises(TimeTravelUnavailable, match=f"version {old} "):
        catalog(root, as_of=old)
    for v in _versions(root):
        _read_everything(root, v)
    assert doctor_problems(root, known_false_positives=True) == []


def test_gc_keeps_what_versions_read_across_merged_deltas(root):
    "Past two merges of the deltas (see snapshots.MERGE_FILES), gc keeps exactly what each kept version reads."
    from artifact_bus.snapshots import MERGE_FILES

    write_bus_toml(root, retain_versions=12, retain_days=0, retain_retired_days=0, compact_min_files=2)
    rng = random.Random(SEED)
    seen, i = {}, 0
    _round(root, i, rng)
    while len(_versions(root)) < 2 * MERGE_FILES + 10:  # versions published (none expired yet)
        _round(root, i, rng)
        i += 1
        with catalog(root) as con:
            fp = fingerprint(con)
        seen[fp["version"]] = fp
    merged = sorted(p.name for p in (root / "published" / "log" / "versions").glob("m-*.parquet"))
    assert len(merged) >= 2, merged
    report = gc(root)
    assert any(r.path.endswith(".parquet") and "/log/" in r.path for r in report.removals), report
    kept = _versions(root)
    assert len(kept) >= 12, kept
    for v in kept:
        _read_everything(root, v)
        if v in seen:
            with catalog(root, as_of=v) as con:
                assert fingerprint(con) == seen[v], f"version {v} reads differently after gc (seed {SEED})"
    assert doctor_problems(root, known_false_positives=True) == []


def test_doctor_tells_a_gc_interrupted_after_recording_from_lost_data(root):
    "gc records a retired job's files as removed, then removes them: killed in between, nothing is lost."
    from artifact_bus.catalog_db import WriterLock, writer_connection
    from artifact_bus.core import load_config
    from artifact_bus.health import doctor

    write_bus_toml(root, retain_versions=2, retain_days=0, retain_retired_days=0)
    submit(_fills(3, 1), "fills", run_id="run-a", root=root)
    submit(_fills(3, 2), "fills", run_id="run-b", root=root)
    ingest(root)
    retire(root, run_id="run-a", reason="bad")
    cfg = load_config(root)
    with WriterLock(cfg.lock), writer_connection(cfg) as con:  # what a gc commits before it deletes
        con.execute("UPDATE catalog.retirements SET files_removed_at = now(), _v = NULL")
        ((path,),) = con.execute("SELECT path FROM catalog.jobs WHERE run_id = 'run-a'").fetchall()
    assert (root / path).is_dir()
    findings = doctor(root)
    assert [str(f) for f in findings if f.level == "problem"] == []
    assert any("a gc was" in str(f) and "interrupted" in str(f) for f in findings if f.level == "warn"), findings
    gc(root)  # the next gc finishes
    assert not (root / path).exists()
    assert not [f for f in doctor(root) if f.level == "problem" or "interrupted" in str(f)]


OPERATION = """
import sys, time
from artifact_bus.gc import gc
from artifact_bus.retire import retire
root, op, arg = sys.argv[1:4]
print("ready", flush=True)
if op == "retire":
    retire(root, run_id=arg, reason="killed mid-way")
else:
    gc(root)
print("done", flush=True)
"""


@pytest.mark.parametrize("op", ["retire", "gc"])
def test_writer_killed_during_retire_or_gc_loses_nothing(root, op):
    write_bus_toml(root, retain_versions=2, retain_days=0, retain_retired_days=0, compact_min_files=2)
    rng = random.Random(SEED)
    i = 0
    durations = []
    for k in range(KILLS):
        for _ in range(2):
            _round(root, i, rng)
            i += 1
        with catalog(root) as con:
            live = [
                r
                for (r,) in con.execute("SELECT DISTINCT run_id FROM catalog.jobs WHERE status = 'accepted'").fetchall()
            ]
            jobs_before = dict(con.execute("SELECT job_id, status FROM catalog.jobs").fetchall())
        victim = rng.choice(live)
        p = spawn(OPERATION, root, op, victim)
        read_line(p, "ready")
        t0 = time.monotonic()
        # first a clean run to learn how long it takes, then kills spread over that span
        if k == 0:
            out, err = finish(p)
            assert p.returncode == 0, err
            durations.append(time.monotonic() - t0)
            continue
        time.sleep(rng.uniform(0, max(durations) * 1.2))
        kill(p)
        ingest(root)  # the next writer finishes or undoes whatever was left
        with catalog(root) as con:
            after = dict(con.execute("SELECT job_id, status FROM catalog.jobs").fetchall())
            retired = {j for (j,) in con.execute("SELECT job_id FROM catalog.retirements").fetchall()}
            in_views = {j for (j,) in con.execute("SELECT DISTINCT _job_id FROM bus.fills").fetchall()}
        assert set(jobs_before) <= set(after), f"jobs lost after a kill during {op} (seed {SEED})"
        victims = {j for j, s in jobs_before.items() if s == "accepted"} & {
            j for j, s in after.items() if s == "retired"
        }
        # a retire happened whole or not at all
        assert victims <= retired and not (victims & in_views), (op, victims, SEED)
        accepted = {j for j, s in after.items() if s == "accepted"}
        assert accepted == in_views, f"accepted jobs and the view disagree after a kill during {op} (seed {SEED})"
        for v in _versions(root):
            _read_everything(root, v)
        assert doctor_problems(root, known_false_positives=True) == [], SEED
    gc(root)  # and a gc after all that completes
    for v in _versions(root):
        _read_everything(root, v)


def test_every_write_to_a_published_table_marks_the_row_for_the_next_version():
    """Rows reach readers through `_v`: NULL until a version publishes them. An UPDATE that forgot to reset it
    would change the writer's catalog and never the readers' (inserts leave it NULL by default)."""
    import re

    import artifact_bus
    from artifact_bus.catalog_db import TABLES

    found = []
    for f in sorted(Path(artifact_bus.__file__).parent.glob("*.py")):
        text = f.read_text()
        for m in re.finditer(r"UPDATE catalog\.(\w+) SET (.*?)(?: WHERE|\"\s*$)", text, re.S | re.M):
            if m.group(1) in TABLES:
                found.append((f.name, m.group(1)))
                assert "_v = NULL" in m.group(2), f"{f.name}: UPDATE catalog.{m.group(1)} does not reset _v"
    assert len(found) >= 8, found  # the scan finds the writer's updates
