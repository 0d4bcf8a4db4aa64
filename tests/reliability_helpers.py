"""Helpers for the reliability tests (crash, concurrency, idempotency, degraded roots, hostile input).

Everything here works on real processes, real files and real DuckDB files: no mocks. Loop counts come
from environment variables with CI-sized defaults; `ARTIFACT_BUS_SOAK=1` switches every default to a
long soak. Deadlines are only generous hang guards, never assertions about speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from helpers import HANG_GUARD, clean_env

SOAK = os.environ.get("ARTIFACT_BUS_SOAK", "") == "1"
PY = sys.executable
CLI = str(Path(sys.executable).with_name("artifact-bus"))


def loops(name: str, ci: int, soak: int) -> int:
    "A loop count: `$name` if set, else the soak size under ARTIFACT_BUS_SOAK=1, else the CI size."
    v = os.environ.get(name)
    return int(v) if v else (soak if SOAK else ci)


# --- processes -----------------------------------------------------------------------------------------


def spawn(code: str, *args, cwd=None, env: dict | None = None, stdin=subprocess.DEVNULL, **kw) -> subprocess.Popen:
    "Start `code` in a fresh interpreter (real process), stdout/stderr piped, text mode."
    return subprocess.Popen(
        [PY, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=cwd,
        env=clean_env(**(env or {})),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run(
    code: str, *args, cwd=None, env: dict | None = None, check=True, timeout=HANG_GUARD
) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [PY, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=cwd,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"subprocess failed with exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        )
    return p


def read_line(proc: subprocess.Popen, want: str | None = None) -> str:
    "Next stdout line of `proc` (blocking; the test timeout is the hang guard); checks it equals `want`."
    line = proc.stdout.readline()
    if not line or (want is not None and line.strip() != want):
        kill(proc)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"expected {want!r} from pid {proc.pid}, got {line!r}\n--- stderr\n{err}")
    return line.strip()


def kill(proc: subprocess.Popen) -> int:
    "SIGKILL a process this test started (by its pid) and reap it; returns its exit status."
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.wait(timeout=HANG_GUARD)


def finish(proc: subprocess.Popen, timeout=HANG_GUARD) -> tuple[str, str]:
    "Wait for `proc` to exit by itself; returns (stdout, stderr). Kills it only past the hang guard."
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        out, err = proc.communicate()
        raise AssertionError(f"pid {proc.pid} hung\n--- stdout\n{out}\n--- stderr\n{err}")


def wait_for(pred, what: str, timeout=HANG_GUARD, poll=0.005, proc: subprocess.Popen | None = None):
    "Poll until `pred()` is truthy (a hang guard, not a timing assertion); fail if `proc` dies first."
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"pid {proc.pid} exited ({proc.returncode}) before {what}\n--- stdout\n{out}\n--- stderr\n{err}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: gave up waiting for {what} after {timeout}s")
        time.sleep(poll)


def read_log(path) -> list[dict]:
    "Complete lines of a JSON-lines log written by a process that may have been killed mid-line."
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return [json.loads(x) for x in lines[:-1] if x]  # the last piece has no newline: never acknowledged


# --- processes that play the bus's roles ---------------------------------------------------------------

WRITER = """
import sys
from artifact_bus import ingest
print("ready", flush=True)
ingest(sys.argv[1])
"""

# Holds one catalog() connection for its whole life and keeps opening fresh ones; every check that fails
# and every exception is appended to the errors file. In every snapshot, each bus.<kind> view must hold
# exactly the rows catalog.artifacts lists for that kind, and versions never go backwards.
READER = """
import json, os, sys, time, traceback
from artifact_bus import catalog
root, errors, stopfile = sys.argv[1:4]

def check(con):
    version = int(con.execute("SELECT value FROM catalog.bus_info WHERE key = 'catalog_version'").fetchone()[0])
    jobs = con.execute("SELECT count(*) FROM catalog.jobs").fetchone()[0]
    for kind, rows in con.execute("SELECT kind, sum(rows) FROM catalog.artifacts GROUP BY kind").fetchall():
        n = con.execute(f"SELECT count(*) FROM bus.{kind}").fetchone()[0]
        assert n == rows, f"snapshot v{version}: bus.{kind} has {n} rows, catalog.artifacts says {rows}"
    bad = con.execute("SELECT count(*) FROM catalog.jobs j WHERE status = 'accepted' AND NOT EXISTS "
                      "(SELECT 1 FROM catalog.artifacts a WHERE a.job_id = j.job_id)").fetchone()[0]
    assert bad == 0, f"snapshot v{version}: {bad} accepted jobs without artifacts"
    return version, jobs

held = catalog(root)
held_state = check(held)
print("holding", flush=True)
n, last = 0, (-1, -1)
while not os.path.exists(stopfile):
    try:
        assert check(held) == held_state, "the held connection's snapshot changed under it"
        with catalog(root) as con:
            state = check(con)
        assert state[0] >= last[0] and state[1] >= last[1], f"went back in time: (version, jobs) {state} after {last}"
        last = state
        n += 1
        time.sleep(0.03)  # leave CPU to the writer on a small machine
    except Exception:
        with open(errors, "a") as f:
            f.write(traceback.format_exc() + "\\n")
held.close()
print(json.dumps({"queries": n, "last": last}), flush=True)
"""


# --- the bus on disk -----------------------------------------------------------------------------------


def write_bus_toml(root: Path, **settings) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, v in settings.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = "[" + ", ".join(json.dumps(str(x)) for x in v) + "]"
        elif isinstance(v, (str, Path)):
            v = json.dumps(str(v))
        lines.append(f"{k} = {v}")
    (root / "bus.toml").write_text("\n".join(lines) + "\n")


def inbox_jobs(root: Path) -> set[str]:
    d = root / "inbox"
    return {n for n in os.listdir(d) if not n.startswith(".")} if d.is_dir() else set()


def tmp_entries(root: Path) -> set[str]:
    d = root / "inbox" / ".tmp"
    return set(os.listdir(d)) if d.is_dir() else set()


SEGMENTS = "_segments"  # store/_segments/<kind>/<segment>.parquet: compacted artifacts, not job folders


def store_jobs(root: Path) -> dict[str, str]:
    "job folder name -> root-relative path, for every job folder under store/<day>/."
    out = {}
    store = root / "store"
    if not store.is_dir():
        return out
    for day in sorted(store.iterdir()):
        if day.name == SEGMENTS:
            continue
        for j in sorted(day.iterdir()) if day.is_dir() else []:
            assert j.name not in out, f"job {j.name} is stored twice: {out[j.name]} and {j.relative_to(root)}"
            out[j.name] = str(j.relative_to(root))
    return out


def segment_files(root: Path) -> set[str]:
    "Root-relative paths of the compacted segment files (not temporary ones)."
    d = root / "store" / SEGMENTS
    return (
        {str(p.relative_to(root)) for p in d.glob("*/*.parquet") if not p.name.startswith(".")} if d.is_dir() else set()
    )


def temp_names(root: Path) -> list[str]:
    "Leftover temporary files of the writer (exports, snapshots, segments, atomic writes)."
    out = []
    seg = root / "store" / SEGMENTS
    for d in (root / "exports", root / "published", root, *(seg.iterdir() if seg.is_dir() else ())):
        if d.is_dir():
            out += [str((d / n).relative_to(root)) for n in os.listdir(d) if n.endswith(".tmp") or ".tmp." in n]
    return sorted(out)


def export_outputs(root: Path) -> list[Path]:
    "What readers read of the golden exports: full exports' files and append exports' folders (links)."
    ex = root / "exports"
    if not ex.is_dir():
        return []
    return sorted(ex.glob("*.parquet")) + sorted(p for p in ex.iterdir() if p.is_symlink())


def readable_parquet(path) -> int:
    "Row count of a Parquet file or a folder of them, read completely (fails on a torn or partial file)."
    return pq.read_table(path).num_rows


def writer_tables(root: Path, catalog_file: Path | None = None) -> dict[str, list]:
    "Every row of the bus's catalog tables in the writer's database, read-only (no writer may be running)."
    con = duckdb.connect(str(catalog_file or root / "artifact_bus.duckdb"), read_only=True)
    try:
        out = {}
        for t in ("bus_info", "jobs", "artifacts", "rejections", "ingest_runs"):
            out[t] = con.execute(f"SELECT * FROM catalog.{t} ORDER BY ALL").fetchall()
        return out
    finally:
        con.close()


def doctor_problems(root: Path, *, known_false_positives: bool = False) -> list[str]:
    """`doctor()`'s problem findings. With `known_false_positives`, drop the one finding known to be
    wrong (doctor counts every store/_segments/<kind> folder of compacted data as an orphan job folder,
    see test_doctor_accepts_compacted_segments) — callers then check the store themselves."""
    from artifact_bus.health import doctor

    out = [str(f) for f in doctor(root) if f.level == "problem"]
    if known_false_positives:
        seg = root / "store" / SEGMENTS
        n = len([d for d in seg.iterdir() if d.is_dir()]) if seg.is_dir() else 0
        out = [
            p
            for p in out
            if not (
                p.startswith(
                    f"PROBLEM store: {n} job folders in the store are not in the catalog, e.g. store/{SEGMENTS}/"
                )
            )
        ]
    return out


def assert_exports_fresh(root: Path) -> None:
    "After a clean ingest, every golden export is readable Parquet (a file, or a folder of parts) matching the catalog."
    from artifact_bus import catalog

    exports = root / "exports"
    assert (exports / "_export_status.json").is_file(), "exports were never generated (no exports/_export_status.json)"
    status = json.loads((exports / "_export_status.json").read_text())
    with catalog(root) as con:
        kinds = [r[0] for r in con.execute("SELECT DISTINCT kind FROM catalog.artifacts ORDER BY 1").fetchall()]
        want = {
            "catalog_artifacts": con.execute("SELECT count(*) FROM catalog.artifacts").fetchone()[0],
            "catalog_rejections": con.execute("SELECT count(*) FROM catalog.rejections").fetchone()[0],
        }
        for k in kinds:
            want[k] = con.execute(f"SELECT count(*) FROM bus.{k}").fetchone()[0]
    for name, rows in want.items():
        # an append export is the folder of its parts (a link to its current generation)
        f = exports / name if (exports / name).is_symlink() else exports / f"{name}.parquet"
        assert f.exists(), f"export {name} missing"
        assert readable_parquet(f) == rows, (
            f"export {name} is stale: {readable_parquet(f)} rows, the catalog has {rows}"
        )
        assert status.get(name, {}).get("status") == "ok", f"export {name}: status {status.get(name)}"
        assert status[name]["rows"] == rows, (
            f"_export_status.json says {status[name]['rows']} rows for {name}, the file has {rows}"
        )


def assert_bus_consistent(
    root: Path,
    expected: dict[str, dict[str, int]],
    *,
    exact: bool = True,
    may_have: set[str] = frozenset(),
    orphan_segments_ok: bool = False,
) -> None:
    """The crash oracle. `expected` maps each acknowledged job id to its rows per kind. Each is cataloged
    exactly once with exactly those rows; no job is both in the store and the inbox; the store and the
    catalog agree folder by folder; `doctor()` finds no problem; the snapshot opens. With `exact`, the
    catalog holds no job besides `expected` and `may_have` (committed but never acknowledged).
    `orphan_segments_ok` tolerates segment files the catalog does not know (a known leftover bug, see
    test_kill_during_compaction_leaves_no_orphan_segment); cataloged segments must exist in any case."""
    from artifact_bus import catalog

    in_store = store_jobs(root)
    assert not (inbox_jobs(root) & set(in_store)), f"jobs both in inbox and store: {inbox_jobs(root) & set(in_store)}"
    with catalog(root) as con:
        counts = dict(con.execute("SELECT job_id, count(*) FROM catalog.jobs GROUP BY job_id").fetchall())
        status = dict(con.execute("SELECT job_id, status FROM catalog.jobs").fetchall())
        paths = dict(con.execute("SELECT job_id, path FROM catalog.jobs").fetchall())
        kinds = [r[0] for r in con.execute("SELECT DISTINCT kind FROM catalog.artifacts").fetchall()]
        rows: dict[str, dict[str, int]] = {}
        for k in kinds:
            for jid, n in con.execute(f"SELECT _job_id, count(*) FROM bus.{k} GROUP BY _job_id").fetchall():
                rows.setdefault(jid, {})[k] = n
        n_rej = con.execute("SELECT count(*) FROM catalog.rejections").fetchone()[0]
        segs = {r[0] for r in con.execute("SELECT path FROM catalog.segments").fetchall()}
        seg_rows = con.execute(
            "SELECT count(*) FROM catalog.artifacts a WHERE segment IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM catalog.segments s WHERE s.segment = a.segment)"
        ).fetchone()[0]
    missing = sorted(set(expected) - set(counts))
    assert not missing, f"{len(missing)} acknowledged jobs are not cataloged, e.g. {missing[:3]}"
    twice = {j: n for j, n in counts.items() if n != 1}
    assert not twice, f"jobs cataloged more than once: {twice}"
    for jid, want in expected.items():
        assert status[jid] == "accepted", (jid, status[jid])
        assert rows.get(jid, {}) == want, f"job {jid}: rows {rows.get(jid)} in bus views, submitted {want}"
    if exact:
        extra = set(counts) - set(expected) - set(may_have)
        assert not extra, f"cataloged jobs nobody submitted: {sorted(extra)[:5]}"
    assert n_rej == 0, f"{n_rej} rejections after crashes of a correct producer/writer"
    # the store and the catalog agree folder by folder
    stored = {j: p for j, p in paths.items() if p.startswith("store/")}
    assert set(in_store) == set(stored), (
        f"store-only: {sorted(set(in_store) - set(stored))[:5]}, "
        f"catalog-only: {sorted(set(stored) - set(in_store))[:5]}"
    )
    assert all(stored[j] == p for j, p in in_store.items())
    # compacted segments: every file cataloged, every cataloged segment on disk, every artifact's segment known
    assert segs <= segment_files(root), f"cataloged segment files missing: {sorted(segs - segment_files(root))[:3]}"
    if not orphan_segments_ok:
        assert segment_files(root) == segs, f"orphan segment files: {sorted(segment_files(root) - segs)[:3]}"
    assert seg_rows == 0, f"{seg_rows} artifacts point at a segment the catalog does not know"
    assert doctor_problems(root, known_false_positives=True) == []


# --- real mounts ---------------------------------------------------------------------------------------


def _sh(*argv) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


def can_mount() -> str | None:
    "None when this process may mount a tmpfs, else the reason it may not."
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CAP_SYS_ADMIN)"
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m", options: str = ""):
    """Mount a real tmpfs at `path` for the block; skips the test with the reason when mount is not
    permitted. Always unmounted afterwards (lazily if something still holds it)."""
    import pytest

    reason = can_mount()
    if reason:
        pytest.skip(reason)
    path.mkdir(parents=True, exist_ok=True)
    p = _sh("mount", "-t", "tmpfs", "-o", f"size={size}" + (f",{options}" if options else ""), "tmpfs", str(path))
    if p.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {p.stderr.strip()}")
    try:
        yield path
    finally:
        if _sh("umount", str(path)).returncode != 0:
            _sh("umount", "-l", str(path))


def remount(path: Path, options: str) -> None:
    p = _sh("mount", "-o", f"remount,{options}", str(path))
    assert p.returncode == 0, f"remount {options} of {path} failed: {p.stderr}"


class Sentinels:
    """Files and folders outside a bus root that nothing may read, write, move or delete. Reads are
    seen through atime when the folder is on a `strictatime` mount (`atime_reliable`); contents, sizes,
    mtimes and the folder listing are compared in any case."""

    OLD_ATIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09

    def __init__(self, folder: Path, atime_reliable: bool):
        self.folder, self.atime_reliable = folder, atime_reliable

    def _paths(self) -> list[Path]:
        out = [self.folder]
        for dirpath, dirnames, filenames in os.walk(self.folder):
            out += [Path(dirpath) / n for n in dirnames + filenames]
        return sorted(out)

    def freeze(self) -> None:
        "Record contents, then reset every atime to an old value, then record the stats (no read after)."
        self.paths = self._paths()
        self.contents = {p: p.read_bytes() for p in self.paths if p.is_file() and not p.is_symlink()}
        for p in self.paths:
            st = p.lstat()
            os.utime(p, ns=(self.OLD_ATIME_NS, st.st_mtime_ns), follow_symlinks=False)
        self.stats = self._stats()

    def _stats(self) -> dict:
        out = {}
        for p in self.paths:
            try:
                st = p.lstat()
            except FileNotFoundError:
                out[p] = None
                continue
            out[p] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                st.st_atime_ns if self.atime_reliable else None,
            )
        return out

    def assert_untouched(self) -> None:
        after = self._stats()  # before any listing or reading of ours
        changed = {str(p): (self.stats[p], after[p]) for p in self.paths if after[p] != self.stats[p]}
        assert not changed, f"files outside the root were touched or read: {changed}"
        assert self._paths() == self.paths, "the folder outside the root changed"
        for p, data in self.contents.items():
            assert p.read_bytes() == data, f"{p} changed"
