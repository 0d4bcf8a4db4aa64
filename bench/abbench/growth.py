"""Growth: what one small ingest and one reader cost as the store grows (issue 15).

One bus grows through the sizes (1,000, 10,000, 100,000 and, in the full mode, 1,000,000 artifacts). At each
size: `ingest()` of 10 new one-artifact jobs of 50 rows, the time until a fresh `catalog()` reader sees their
rows in `bus.fills`, the publish step and the golden exports inside that ingest, and `catalog()` (and
`catalog(as_of=...)` where the installed artifact_bus has it) opened plus a first query. Ratios are against the
first size, measured in the same run.

A store of a million artifacts cannot be built by real ingests in a benchmark's time, so most of it is seeded as
the writer leaves a store after ingesting and compacting (`seed`); the rest is real: 40 jobs submitted and
ingested (and compacted) first, one real ingest after each seeding, which publishes, and the jobs measured."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import os
import shutil
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .common import progress
from .report import Results
from .systems import _Phases

KIND = "fills"
ROWS = 50  # rows per artifact: the small jobs, the seeded ones and the measured ones alike
NEW_JOBS = 10  # one-artifact jobs per measured ingest
CONSECUTIVE = 20  # ingests of NEW_JOBS in a row at each size, compaction and catalog merges as they come
REAL_JOBS = 40  # submitted and ingested for real before any seeding: more than compact_min_files, so compacted
SEGMENT_ARTIFACTS = 500  # a seeded segment holds what one ingest batch (batch_size 500) compacts into one
SEED_T0_MS = 1_735_689_600_000  # 2025-01-01T00:00Z: every seeded job is older than the jobs a run submits
SEED_STEP_MS = 30_000  # one seeded job every 30 s: a million of them span a little under a year
CROCKFORD = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)


def ulids(ms: np.ndarray, tag: str, seq: np.ndarray) -> list[str]:
    """Deterministic ULIDs: 10 characters of time (`ms`), then `tag` (5 Crockford characters) and 11 of `seq`
    in place of the random part, so that seeded ids are valid, time-sortable and the same in every run."""
    ms, seq = ms.astype(np.uint64), seq.astype(np.uint64)
    cols = [CROCKFORD[(ms >> np.uint64(5 * (9 - k))) & np.uint64(31)] for k in range(10)]
    cols += [np.full(len(ms), ord(c), dtype=np.uint8) for c in tag]
    cols += [CROCKFORD[(seq >> np.uint64(5 * (10 - k))) & np.uint64(31)] for k in range(11)]
    return np.stack(cols, axis=1).copy().view("S26").ravel().astype(str).tolist()


def _template() -> tuple[pa.Table, bytes]:
    "The seeded artifacts' content: one 50-row fills table, the same bytes for each (as if one producer re-ran)."
    from artifact_bus.testing import fills_table

    t = fills_table(ROWS, 7, "seed")
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return t, buf.getvalue()


def seeded_jobs(start: int, end: int) -> tuple[np.ndarray, list[str], list[str]]:
    "The seeded jobs numbered `start` to `end`: their times (ms), ids and store days."
    ms = SEED_T0_MS + np.arange(start, end, dtype=np.int64) * SEED_STEP_MS
    days = (ms // 1000).astype("datetime64[s]").astype("datetime64[D]").astype(str).tolist()
    return ms, ulids(ms, "BENCH", np.arange(start, end)), days


class Pool:
    """The seeded jobs' folders (`store/<day>/<job_id>/fills.parquet`), kept between runs in a folder of their own.

    Creating a million small files takes minutes on a busy disk, and deleting them longer still, so seeding moves
    the folders a store needs out of the pool (a whole day's folder in one rename where it can) and `give_back`
    moves them back at the end. Seeded jobs are numbered from 0 and taken in order; the pool holds jobs 0 to
    `count` with the same bytes in every run. `pool.json` is present only while the pool is complete: a pool found
    without it (a run that died with the folders out) or made from other bytes is deleted and made again."""

    def __init__(self, folder: Path, data: bytes):
        from artifact_bus.protocol import checksum_bytes

        self.folder, self.store, self.data = folder, folder / "store", data
        self.meta = folder / "pool.json"
        want = {"layout": 1, "kind": KIND, "t0_ms": SEED_T0_MS, "step_ms": SEED_STEP_MS, "data": checksum_bytes(data)}
        try:
            got = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            got = {}
        self.count = got.get("count", 0) if {k: got.get(k) for k in want} == want else 0
        if not self.count and folder.exists():
            shutil.rmtree(folder)
        self.want, self.taken = want, 0
        self.store.mkdir(parents=True, exist_ok=True)
        self.meta.unlink(missing_ok=True)  # in use: incomplete until give_back

    def fill(self, end: int) -> None:
        "Create seeded jobs `count` to `end` in the pool (not fsynced: set-up)."
        if end <= self.count:
            return
        _, ids, days = seeded_jobs(self.count, end)
        for d in sorted(set(days)):
            (self.store / d).mkdir(exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for jid, day in zip(ids, days):
            folder = f"{self.store}/{day}/{jid}"
            os.mkdir(folder)
            fd = os.open(f"{folder}/{KIND}.parquet", flags, 0o644)
            try:
                os.write(fd, self.data)
            finally:
                os.close(fd)
        self.count = end

    def take(self, store: Path, end: int) -> None:
        "Move seeded jobs `taken` to `end` into the bus's `store`."
        self.fill(end)
        _, ids, days = seeded_jobs(self.taken, end)
        last = {}
        for k, d in enumerate(days):
            last[d] = k
        done = 0
        for d, k in last.items():
            whole = not (store / d).exists() and (
                self.taken + k + 1 == self.count or seeded_jobs(self.taken + k + 1, self.taken + k + 2)[2][0] != d
            )
            if whole:  # every job left in the pool's day folder: one rename
                os.rename(self.store / d, store / d)
            else:
                (store / d).mkdir(exist_ok=True)
                for jid in ids[done : k + 1]:
                    os.rename(self.store / d / jid, store / d / jid)
            done = k + 1
        self.taken = end

    def give_back(self, store: Path) -> None:
        "Move the seeded jobs taken back into the pool and mark it complete."
        _, ids, days = seeded_jobs(0, self.taken)
        for d in sorted(set(days)):
            if not (store / d).exists():
                continue
            if not (self.store / d).exists():
                os.rename(store / d, self.store / d)
            else:
                for jid in os.listdir(store / d):
                    os.rename(store / d / jid, self.store / d / jid)
        self.taken = 0
        self.meta.write_text(json.dumps({**self.want, "count": self.count}))


def seed(root: Path, n: int, start: int, pool: Pool) -> dict:
    """Add `n` one-artifact fills jobs to the bus at `root` as its writer would have left them after ingesting
    and compacting them: each job's folder and Parquet file in the store (`store/<day>/<job_id>/fills.parquet`,
    not fsynced: set-up), the compacted segments (`store/_segments/fills/<segment>.parquet`, the artifacts' rows
    plus `_job_id` and `_run_id`, as compaction writes them), and the catalog rows in one transaction of the
    writer's connection, under the writer lock: one `ingest_runs` row and one segment per 500 jobs, the `jobs` and
    `artifacts` rows (`segment` set), inserted `BY NAME` from SQL so that columns the catalog gains later take their
    defaults. `start` numbers the seeded jobs across calls (ids and times follow from it: deterministic).
    The bus must already hold a real job of the kind (its schema, lineage and reader columns are taken from it).
    Not written: each job's manifest.json and COMMIT, which nothing reads once a job is in the store. Does not
    publish: the next ingest() does (the catalog version is bumped)."""
    import duckdb

    from artifact_bus.catalog_db import WriterLock, bump_version, writer_connection
    from artifact_bus.core import load_config, sql_str
    from artifact_bus.protocol import checksum_bytes

    config = load_config(root)
    out = {"artifacts": n, "start": start}
    t_all = time.perf_counter()
    table, data = _template()
    if start != pool.taken:
        raise RuntimeError(f"seed: jobs are seeded in order, the next is {pool.taken}, not {start}")
    ms, ids, days = seeded_jobs(start, start + n)
    group = np.arange(n) // SEGMENT_ARTIFACTS  # each group: one ingest run, compacted into one segment
    n_groups = int(group[-1]) + 1 if n else 0
    last_ms = np.array([ms[min((g + 1) * SEGMENT_ARTIFACTS, n) - 1] for g in range(n_groups)], dtype=np.int64)
    seg_ids = ulids(last_ms + 60_000, "SEGMT", np.arange(start, start + n_groups))

    # the store: one folder and one file per job, from the pool
    t0 = time.perf_counter()
    made = pool.count
    pool.take(config.store, start + n)
    out["files_s"], out["files_made"] = time.perf_counter() - t0, pool.count - made

    with WriterLock(config.lock), writer_connection(config) as con:
        real = con.execute(
            "SELECT any_value(a.schema), any_value(a.name), any_value(j.lineage) FROM catalog.artifacts a "
            "JOIN catalog.jobs j USING (job_id) WHERE a.kind = ?",
            [KIND],
        ).fetchall()[0]
        if real[0] is None:
            raise RuntimeError(f"seed: the bus at {root} holds no real {KIND} job to take the schema from")
        schema, name, lineage = real
        first_run = (
            con.execute(
                "SELECT coalesce(max(n), 0) FROM (SELECT max(run_no) AS n FROM catalog.ingest_runs "
                "UNION ALL SELECT max(ingest_run) FROM catalog.jobs)"
            ).fetchall()[0][0]
            + 1
        )
        try:
            first_run = max(first_run, int((config.root / "last_run_no").read_text()) + 1)
        except (FileNotFoundError, ValueError):
            pass
        seg_rel = [f"store/_segments/{KIND}/{s}.parquet" for s in seg_ids]
        jobs = pa.table(
            {
                "job_id": ids,
                "day": days,
                "ms": ms,
                "grp": group,
                "run_no": group + first_run,
                "segment": [seg_ids[g] for g in group],
            }
        )
        con.register("__seed", jobs)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __seed_jobs AS SELECT job_id, 'store/' || day || '/' || job_id AS path, "
            "to_timestamp(ms / 1000.0) AS submitted_at, run_no, 'seed-' || run_no AS run_id, segment, grp "
            "FROM __seed"
        )
        con.unregister("__seed")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __seed_runs AS SELECT run_no, min(submitted_at) AS started_at, "
            "max(submitted_at) + INTERVAL 60 SECOND AS finished_at, count(*) AS accepted, any_value(segment) AS "
            "segment, any_value(run_id) AS run_id FROM __seed_jobs GROUP BY run_no"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __seed_jobs2 AS SELECT j.*, r.finished_at AS ingested_at "
            "FROM __seed_jobs j JOIN __seed_runs r USING (run_no)"
        )

        # the segments, as compaction writes them: the artifacts' columns, then _job_id and _run_id (written with
        # pyarrow: DuckDB's COPY syncs each file, and a million artifacts make thousands of segments)
        t0 = time.perf_counter()
        folder = config.root / "store" / "_segments" / KIND
        folder.mkdir(parents=True, exist_ok=True)
        full = table.take(np.tile(np.arange(ROWS), SEGMENT_ARTIFACTS))
        seg_bytes = {}
        for g, (sid, rel) in enumerate(zip(seg_ids, seg_rel)):
            lo, hi = g * SEGMENT_ARTIFACTS, min((g + 1) * SEGMENT_ARTIFACTS, n)
            body = full if hi - lo == SEGMENT_ARTIFACTS else full.slice(0, (hi - lo) * ROWS)
            each = pa.array(np.repeat(np.arange(hi - lo), ROWS))
            seg = body.append_column("_job_id", pa.array(ids[lo:hi]).take(each)).append_column(
                "_run_id", pa.array([f"seed-{first_run + g}"]).take(pa.array(np.zeros(len(body), dtype=np.int64)))
            )
            pq.write_table(seg, config.root / rel, row_group_size=122880)
            seg_bytes[sid] = (config.root / rel).stat().st_size
        out["segments"] = n_groups
        out["segments_s"] = time.perf_counter() - t0

        # the catalog rows, in one transaction, BY NAME
        t0 = time.perf_counter()
        con.register(
            "__seg_files",
            pa.table({"segment": list(seg_bytes), "bytes": list(seg_bytes.values()), "path": seg_rel}),
        )
        lit = sql_str
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                "INSERT INTO catalog.ingest_runs BY NAME SELECT run_no, started_at, finished_at, 'ok' AS outcome, "
                "accepted, 0 AS rejected, 0 AS duplicates, 'bench-seed' AS host FROM __seed_runs"
            )
            con.execute(
                f"INSERT INTO catalog.jobs BY NAME SELECT job_id, 'accepted' AS status, run_id, "
                f"'bench-growth' AS producer, submitted_at, ingested_at, run_no AS ingest_run, path, "
                f"1 AS n_artifacts, {ROWS} AS rows, {len(data)} AS bytes, '{{}}' AS meta, {lit(lineage)} AS lineage "
                f"FROM __seed_jobs2"
            )
            con.execute(
                f"INSERT INTO catalog.artifacts BY NAME SELECT job_id, {lit(name)} AS name, {lit(KIND)} AS kind, "
                f"{lit(KIND + '.parquet')} AS file, path || '/' || {lit(KIND + '.parquet')} AS path, {ROWS} AS rows, "
                f"{len(data)} AS bytes, {lit(checksum_bytes(data))} AS checksum, {lit(schema)} AS schema, run_id, "
                f"'bench-growth' AS producer, submitted_at, ingested_at, segment FROM __seed_jobs2"
            )
            con.execute(
                f"INSERT INTO catalog.segments BY NAME SELECT r.segment, {lit(KIND)} AS kind, f.path, "
                f"r.accepted AS artifacts, r.accepted * {ROWS} AS rows, f.bytes, r.finished_at AS created_at "
                f"FROM __seed_runs r JOIN __seg_files f USING (segment)"
            )
            bump_version(con)
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise
        finally:
            con.unregister("__seg_files")
        out["catalog_s"] = time.perf_counter() - t0
    out["seconds"] = time.perf_counter() - t_all
    out["probe_job"] = ids[n // 2] if n else None
    return out


def segment_schema(path: Path) -> list[tuple[str, str]]:
    "A segment file's columns and types: a seeded segment must look like one compaction wrote."
    return [(f.name, str(f.type)) for f in pq.read_schema(path)]


def _submit_jobs(root: Path, n: int, tag: str, seed0: int) -> list[str]:
    from artifact_bus.submit import submit
    from artifact_bus.testing import fills_table

    return [
        submit(
            fills_table(ROWS, seed0 + k, f"{tag}-{k}"),
            KIND,
            run_id=f"{tag}-{k}",
            producer="bench-growth",
            root=root,
            required=True,
        ).job_id
        for k in range(n)
    ]


def _reader_count(root: Path, job_ids: list[str], **kw) -> int:
    "A fresh catalog() reader: how many rows of these jobs `bus.fills` shows."
    from artifact_bus.catalog import catalog

    with catalog(root, **kw) as c:
        return c.execute(f"SELECT count(*) FROM bus.{KIND} WHERE _job_id = ANY(?)", [job_ids]).fetchall()[0][0]


def _timed_ingest(root: Path, job_ids: list[str]) -> dict:
    """ingest() of the waiting jobs, with a fresh catalog() reader checking after each publish whether it sees
    all their rows. The checks' time is taken out of the ingest's: queryable is the publish after which a
    reader first saw them, plus that reader's open and query."""
    from artifact_bus.ingest import ingest

    want = len(job_ids) * ROWS
    seen = []

    def check():
        seen.append(_reader_count(root, job_ids) == want)

    with _Phases(after_publish=check) as ph:
        t0 = time.perf_counter()
        rep = ingest(root)
        t1 = time.perf_counter()
    checks = [c for c in ph.calls if c[0] == "check"]
    lost = lambda upto: sum(c[2] - c[1] for c in checks if c[2] <= upto)  # check time before `upto`
    total = (t1 - t0) - lost(t1)
    first = next((c for c, ok in zip(checks, seen) if ok), None)
    if first is not None:
        queryable, exact = first[2] - t0 - lost(first[1]), True
    else:  # no publish seen (or none showed them): a reader after ingest() returned
        c0 = time.perf_counter()
        ok = _reader_count(root, job_ids) == want
        queryable, exact = total + (time.perf_counter() - c0), False
        if not ok:
            raise RuntimeError(f"growth: after ingest() a reader does not see the {len(job_ids)} new jobs' rows")
    span = lambda n: sum(c[2] - c[1] for c in ph.calls if c[0] == n)
    return {
        "seconds": total,
        "queryable_s": queryable,
        "queryable_exact": exact,
        "publish_s": span("publish"),
        "publishes": sum(c[0] == "publish" for c in ph.calls),
        "compact_s": span("compact_kinds"),
        "exports_s": sum(e.get("duration_s") or 0 for e in rep.exports.values()),
        "exports": sorted(rep.exports),
        "exports_phase_s": span("run_exports"),
        "accepted": len(rep.accepted),
    }


def _consecutive(root: Path, N: int) -> list[float]:
    "`CONSECUTIVE` ingests of `NEW_JOBS` new jobs each, one after the other, nothing forced: seconds each."
    from artifact_bus.ingest import ingest

    out = []
    for r in range(CONSECUTIVE):
        _submit_jobs(root, NEW_JOBS, f"seq-{N}-{r}", 50_000 + N + 100 * r)
        t0 = time.perf_counter()
        ingest(root)
        out.append(time.perf_counter() - t0)
    return out


def _loose(root: Path) -> int:
    "Artifacts not compacted yet."
    from artifact_bus.catalog import catalog

    with catalog(root) as c:
        return c.execute("SELECT count(*) FROM catalog.artifacts WHERE segment IS NULL").fetchall()[0][0]


def _open_query(root: Path, probe: str, reps: int, **kw) -> tuple[list[float], int]:
    "catalog() opened (with `kw`, e.g. as_of) plus a first query, `reps` times: seconds each, and its answer."
    from artifact_bus.catalog import catalog

    ts, got = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        with catalog(root, **kw) as c:
            got = c.execute(f"SELECT count(*) FROM bus.{KIND} WHERE _job_id = ?", [probe]).fetchall()[0][0]
        ts.append(time.perf_counter() - t0)
    return ts, got


def _doctor_problems(root: Path) -> list[str]:
    from artifact_bus.health import doctor

    return [str(f) for f in doctor(root) if f.level == "problem"]


def _catalog_artifacts(root: Path) -> int:
    from artifact_bus.catalog import catalog

    with catalog(root) as c:
        return c.execute("SELECT count(*) FROM catalog.artifacts").fetchall()[0][0]


def growth_workload(
    R: Results,
    sizes: list[int],
    reps: int,
    open_reps: int,
    work: Path,
    budget: float,
    doctor_max: int,
    pool_dir: Path | None = None,
) -> None:
    """Grow one bus through `sizes` (artifacts); at each, `reps` measured ingests of 10 new jobs and `open_reps`
    catalog() opens. Once a size's measured ingests took longer than `budget` seconds in all, it has no more.
    `doctor` checks the seeded store up to `doctor_max` artifacts (it stats every file). The seeded jobs' folders
    come from the pool in `pool_dir` (kept between runs; default: in `work`, made afresh) and go back to it."""
    root = work / "growth" / "bus"
    shutil.rmtree(root.parent, ignore_errors=True)
    root.parent.mkdir(parents=True)
    last_day = str(np.datetime64(SEED_T0_MS + max(sizes) * SEED_STEP_MS, "ms").astype("datetime64[D]"))
    if last_day >= datetime.now(timezone.utc).strftime("%Y-%m-%d"):
        raise RuntimeError(f"growth: {max(sizes):,} seeded jobs would reach today's store folder ({last_day})")
    pool = Pool(pool_dir or work / "growth-pool", _template()[1])
    extra = R.extra.setdefault("growth", {"sizes": {}, "pool": {"folder": str(pool.folder), "had": pool.count}})
    try:
        _grow(R, root, pool, sorted(sizes), reps, open_reps, budget, doctor_max, extra)
    finally:
        t0 = time.perf_counter()
        pool.give_back(root / "store")
        extra["pool"]["give_back_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        shutil.rmtree(root.parent, ignore_errors=True)
        extra["cleanup_s"] = time.perf_counter() - t0


def _grow(R: Results, root: Path, pool: Pool, sizes, reps, open_reps, budget, doctor_max, extra) -> None:
    from artifact_bus.catalog import catalog
    from artifact_bus.compact import compact
    from artifact_bus.core import load_config
    from artifact_bus.ingest import ingest

    has_as_of = "as_of" in inspect.signature(catalog).parameters
    extra["as_of_supported"] = has_as_of
    min_files = load_config(root).compact_min_files  # an ingest compacts once this many small files wait

    # the real part: 40 jobs submitted and ingested (compacted: more than compact_min_files)
    t0 = time.perf_counter()
    _submit_jobs(root, REAL_JOBS, "real", 10_000)
    rep = ingest(root)
    if len(rep.accepted) != REAL_JOBS:
        raise RuntimeError(f"growth: the real ingest accepted {len(rep.accepted)} of {REAL_JOBS} jobs")
    extra["real"] = {"jobs": REAL_JOBS, "seconds": time.perf_counter() - t0, "compacted": rep.compacted}
    real_segments = sorted((root / "store" / "_segments" / KIND).glob("*.parquet"))
    total, seeded, loose, base = REAL_JOBS, 0, 0 if rep.compacted else REAL_JOBS, {}
    for N in sizes:
        name = f"growth {N:,} artifacts"
        need = N - total - 1  # the set-up ingest below adds one real job
        if need < 0:
            R.notes.append(f"{name}: skipped, the store already holds {total} artifacts")
            continue
        if loose:  # the jobs measured at the size before, compacted as the bus does once enough have gathered
            compact(root, config=dataclasses.replace(load_config(root), compact_min_files=1))
            loose = 0
        s = seed(root, need, seeded, pool)
        seeded += need
        progress(f"{N:,}: seeded in {s['seconds']:.0f}s")
        t0 = time.perf_counter()
        setup = _submit_jobs(root, 1, f"setup-{N}", 20_000 + N)
        rep = ingest(root)  # publishes the seeded rows (and runs the exports over them)
        s["setup_ingest_s"] = time.perf_counter() - t0
        # the bus's own compaction over that history merges a kind's small segments in tiers: so would it here
        t0 = time.perf_counter()
        compact(root)
        s["merge_s"] = time.perf_counter() - t0
        if rep.accepted != setup:
            raise RuntimeError(f"growth: the set-up ingest at {N} accepted {rep.accepted}, not {setup}")
        total, loose = total + need + 1, loose + 1
        count = _catalog_artifacts(root)
        if count != N:
            R.notes.append(f"{name}: catalog() counts {count:,} artifacts, expected {N:,}")
        if seeded and real_segments:
            mine = sorted((root / "store" / "_segments" / KIND).glob("*SEGMT*.parquet"))
            if mine and segment_schema(mine[0]) != segment_schema(real_segments[0]):
                R.notes.append(f"{name}: a seeded segment's columns differ from those compaction wrote")
        if N <= doctor_max:
            t1 = time.perf_counter()
            problems = _doctor_problems(root)
            s["doctor_s"] = time.perf_counter() - t1
            s["doctor_problems"] = problems
            if problems:
                R.notes.append(f"{name}: doctor found problems after seeding: {problems[0]}")
        probe = s["probe_job"]
        as_of = datetime.now(timezone.utc)  # a version before the jobs measured below: time travel must not show them
        time.sleep(0.01)
        runs, lost_budget = [], False
        for r in range(reps):
            if min_files and loose + NEW_JOBS >= min_files:  # no measured ingest compacts: each does the same work
                compact(root, config=dataclasses.replace(load_config(root), compact_min_files=1))
                loose = 0
            ids = _submit_jobs(root, NEW_JOBS, f"new-{N}-{r}", 30_000 + N + 100 * r)
            m = _timed_ingest(root, ids)
            m["job_ids"] = ids
            if m["accepted"] != NEW_JOBS:
                R.notes.append(f"{name}: a measured ingest accepted {m['accepted']} of {NEW_JOBS} jobs")
            runs.append(m)
            total, loose = total + NEW_JOBS, loose + NEW_JOBS
            if sum(m["seconds"] for m in runs) > budget and r + 1 < reps:
                lost_budget = True
                break
        if lost_budget:
            R.notes.append(
                f"{name}: measured {len(runs)} times, not {reps} (the ingests took "
                f"{sum(m['seconds'] for m in runs):.0f} s > the {budget:.0f} s budget)"
            )
        seq = _consecutive(root, N)  # the mean: what compaction and the catalog's merges add, which a median hides
        total += CONSECUTIVE * NEW_JOBS
        loose = _loose(root)
        opens, got = _open_query(root, probe, open_reps)
        if got != ROWS:
            R.notes.append(f"{name}: catalog() shows {got} rows for job {probe}, expected {ROWS}")
        as_of_t = None
        if has_as_of:
            try:
                as_of_t, got = _open_query(root, probe, open_reps, as_of=as_of)
                hidden = _reader_count(root, runs[-1]["job_ids"], as_of=as_of)
                if got != ROWS or hidden:
                    R.notes.append(
                        f"{name}: catalog(as_of=before the measured ingests) shows {got} rows of job {probe} "
                        f"(expected {ROWS}) and {hidden} rows of the jobs ingested after (expected 0)"
                    )
            except Exception as e:
                R.notes.append(f"{name}: catalog(as_of=...) failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        extra["sizes"][N] = {"seed": s, "runs": runs, "open_s": opens, "as_of_open_s": as_of_t, "consecutive_s": seq}
        med = lambda key: statistics.median(m[key] for m in runs)
        cur = {
            "ingest": med("seconds"),
            "queryable": med("queryable_s"),
            "publish": med("publish_s"),
            "exports": med("exports_s"),
            "open": statistics.median(opens),
            "as_of": statistics.median(as_of_t) if as_of_t else None,
            "mean": statistics.mean(seq),
        }
        base = base or cur
        last = N == sizes[-1] and N >= 100_000  # the targets, at the largest size measured
        ratio = lambda k: (cur[k] / base[k]) if base.get(k) and cur[k] is not None else None
        first = N == sizes[0]
        R.add(
            name,
            f"(set-up: {need:,} artifacts seeded in {s['seconds']:.1f} s, files {s['files_s']:.1f} s, "
            f"{s['segments']} segments {s['segments_s']:.1f} s, catalog rows {s['catalog_s']:.1f} s; "
            f"then ingest() of 1 job: seconds; the bus's compaction merged them into fewer segments in "
            f"{s['merge_s']:.1f} s)",
            [s["setup_ingest_s"]],
        )
        R.add(
            name,
            f"ingest() of {NEW_JOBS} one-artifact jobs of {ROWS} rows",
            [m["seconds"] for m in runs],
            ratio=ratio("ingest"),
            ratio_to=f"{sizes[0]:,} artifacts",
            target=None if first else "≤ 1.5x",
            met=(ratio("ingest") <= 1.5) if last else None,
        )
        R.add(
            name,
            f"  mean of {CONSECUTIVE} ingest() of {NEW_JOBS} jobs in a row (compaction, catalog merges as they come; "
            f"max {max(seq):.2f} s)",
            [statistics.mean(seq)],
            ratio=ratio("mean"),
            ratio_to=f"{sizes[0]:,} artifacts",
            target=None if first else "≤ 1.5x",
            met=(ratio("mean") <= 1.5) if last else None,
        )
        exact = all(m["queryable_exact"] for m in runs)
        R.add(
            name,
            "  until queryable: a fresh catalog() sees their rows"
            + ("" if exact else " [no publish step seen: after ingest() returned]"),
            [m["queryable_s"] * 1000 for m in runs],
            unit="ms",
            ratio=ratio("queryable"),
            ratio_to=f"{sizes[0]:,} artifacts",
            target="< 300 ms" if last else None,
            met=(cur["queryable"] < 0.3) if last else None,
        )
        R.add(
            name,
            f"  publish (x{runs[0]['publishes']} in the ingest)",
            [m["publish_s"] * 1000 for m in runs],
            unit="ms",
            ratio=ratio("publish"),
            ratio_to=f"{sizes[0]:,} artifacts",
        )
        R.add(
            name,
            f"  golden exports in the ingest ({', '.join(runs[0]['exports']) or 'none'})",
            [m["exports_s"] for m in runs],
            ratio=ratio("exports"),
            ratio_to=f"{sizes[0]:,} artifacts",
        )
        R.add(
            name,
            "catalog() open + count of one job's rows",
            [x * 1000 for x in opens],
            unit="ms",
            ratio=ratio("open"),
            ratio_to=f"{sizes[0]:,} artifacts",
            target="< 30 ms" if last else None,
            met=(cur["open"] < 0.03) if last else None,
        )
        if as_of_t:
            R.add(
                name,
                "catalog(as_of=<datetime>) open + the same count",
                [x * 1000 for x in as_of_t],
                unit="ms",
                ratio=ratio("as_of"),
                ratio_to=f"{sizes[0]:,} artifacts",
                target="< 100 ms" if last else None,
                met=(cur["as_of"] < 0.1) if last else None,
            )
        else:
            R.na(name, "catalog(as_of=...) open + the same count", "this artifact_bus has no as_of")
        progress(f"{N:,}: ingest {cur['ingest']:.2f}s")
