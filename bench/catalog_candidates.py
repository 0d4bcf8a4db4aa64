"""Publishing a reader snapshot: what one small change costs as the catalog grows, for three candidates.

For a catalog of N artifacts (one per job) and a change of 10 jobs (10 `jobs` rows + 10 `artifacts` rows):

- **A copy**: the old way, every catalog table copied into a new DuckDB file (`CREATE TABLE ... AS`,
  `CHECKPOINT`, `DETACH`); a reader opens that file.
- **B versions**: `artifact_bus.snapshots.publish` on a real writer catalog (after one publish and a base):
  the changed rows as Parquet deltas plus a small snapshot of views; a reader calls `catalog(root)`, or
  `catalog(root, as_of=<the first version after the base>)` for time travel.
- **C DuckLake**: the same rows in a DuckLake (duckdb 1.5.5 + the `duckdb-extension-ducklake` wheel), its
  metadata in a DuckDB file, and in SQLite when the sqlite extension is installed as a wheel: the change is
  one transaction (one DuckLake snapshot); a reader attaches and counts, and counts `AT (VERSION => n)` (the
  snapshot before the changes). DuckLake's defaults are kept: its data inlining stores such small inserts in the
  metadata catalog, not as Parquet files.

Times are medians of 5 (writes) or of 5 fresh connections (reads); the OS page cache is warm. A and B's reads
include opening (`catalog(root, as_of=...)` also reads the current version's list); DuckLake's time travel is the
query alone, on the reader already attached. The SQLite catalog needs `pip install duckdb-extension-sqlite==1.5.5`
(not among the project's requirements); without it that row is left out and the output says why.
It reports; it never asserts beyond checking the row counts it reads.

    python bench/catalog_candidates.py --quick   # N = 10,000 and 100,000
    python bench/catalog_candidates.py           # also N = 1,000,000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from artifact_bus.catalog import catalog
from artifact_bus.catalog_db import TABLES, writer_connection
from artifact_bus.core import load_config, sql_str
from artifact_bus.snapshots import base_version, publish, rebase

REPS = 5
CHANGE = 10  # jobs per change
PER_SEGMENT = 10_000  # seeded artifacts are compacted, this many per segment file


def jobs_sql(start: int, n: int) -> str:
    return f"""
        SELECT printf('j%09d', i) AS job_id, 'accepted' AS status, 'r' || (i // 100) AS run_id,
               'bench' AS producer, NULL::VARCHAR AS key, NULL::VARCHAR AS duplicate_of,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS submitted_at,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i + 1) AS ingested_at,
               (i // 1000)::BIGINT AS ingest_run, printf('store/2026-01-01/j%09d', i) AS path,
               1 AS n_artifacts, 50::BIGINT AS rows, 2000::BIGINT AS bytes,
               '{{"strategy": "mean-reversion"}}'::JSON AS meta, NULL::JSON AS lineage
        FROM range({start}, {start + n}) AS t(i)"""


def artifacts_sql(start: int, n: int, segmented: bool) -> str:
    seg = f"printf('seg-%06d', i // {PER_SEGMENT})" if segmented else "NULL::VARCHAR"
    return f"""
        SELECT printf('j%09d', i) AS job_id, 'fills' AS name, 'fills' AS kind, 'fills.parquet' AS file,
               printf('store/2026-01-01/j%09d/fills.parquet', i) AS path, 1::BIGINT AS rows, 2000::BIGINT AS bytes,
               md5(i::VARCHAR) AS checksum, NULL::JSON AS schema, 'r' || (i // 100) AS run_id, 'bench' AS producer,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS submitted_at,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i + 1) AS ingested_at, {seg} AS segment
        FROM range({start}, {start + n}) AS t(i)"""


def fills(n: int, job_ids: list[str] | None = None) -> pa.Table:
    cols = {"symbol": ["AAPL"] * n, "qty": [1.0] * n, "price": [190.0] * n}
    if job_ids is not None:
        cols |= {"_job_id": job_ids, "_run_id": ["r0"] * n}
    return pa.table(cols)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def du(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


# ---------------------------------------------------------------- the bus: seed, B (versions), A (copy)


def seed_bus(root: Path, n: int):
    config = load_config(root)
    con = writer_connection(config)
    con.execute(f"INSERT INTO catalog.jobs BY NAME {jobs_sql(0, n)}")
    con.execute(f"INSERT INTO catalog.artifacts BY NAME {artifacts_sql(0, n, segmented=True)}")
    con.execute(
        "INSERT INTO catalog.kind_columns (kind, lname, name, type) VALUES ('fills', 'symbol', 'symbol', 'VARCHAR'), "
        "('fills', 'qty', 'qty', 'DOUBLE'), ('fills', 'price', 'price', 'DOUBLE')"
    )
    for k in range((n + PER_SEGMENT - 1) // PER_SEGMENT):  # real segment files: publish binds the views
        rel = f"segments/fills/seg-{k:06d}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(fills(1, [f"j{k * PER_SEGMENT:09d}"]), root / rel)
        con.execute(
            "INSERT INTO catalog.segments (segment, kind, path, artifacts, rows, bytes, created_at) "
            "VALUES (?, 'fills', ?, ?, ?, 0, now())",
            [f"seg-{k:06d}", rel, min(PER_SEGMENT, n - k * PER_SEGMENT), 1],
        )
    return config, con


def add_change(con, root: Path, start: int) -> None:
    "10 new jobs, each with one loose artifact file (real: the snapshot's views read their footers)."
    for i in range(start, start + CHANGE):
        f = root / f"store/2026-01-01/j{i:09d}/fills.parquet"
        f.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(fills(1), f)
    con.execute(f"INSERT INTO catalog.jobs BY NAME {jobs_sql(start, CHANGE)}")
    con.execute(f"INSERT INTO catalog.artifacts BY NAME {artifacts_sql(start, CHANGE, segmented=False)}")


def count(con, sql: str = "SELECT count(*) FROM catalog.artifacts") -> int:
    return con.execute(sql).fetchall()[0][0]


def bench_bus(root: Path, n: int) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    config, con = seed_bus(root, n)
    out["seed_s"] = time.perf_counter() - t0
    first = publish(con, config)["catalog_version"]
    if base_version(con) != first:  # publish rebases by itself past its thresholds; make sure there is a base
        rebase(con, config, first)
    out["first_publish_s"] = time.perf_counter() - t0 - out["seed_s"]
    nxt = n
    pubs = []
    for _ in range(REPS):
        add_change(con, root, nxt)
        nxt += CHANGE
        pubs.append(timed(lambda: publish(con, config)))
    out["B_publish"] = med(pubs)
    snaps = sorted(config.published.glob("snap-v*.duckdb"))
    out["B_snapshot_bytes"] = snaps[-1].stat().st_size
    out["B_delta_bytes"] = med(
        [du((root / "published/log").glob(f"*/d-{v}.parquet")) for v in range(first + 1, first + 1 + REPS)]
    )
    rows = n + REPS * CHANGE
    reads, olds, firsts = [], [], []
    for _ in range(REPS):
        t0 = time.perf_counter()
        with catalog(root) as r:
            assert count(r) == rows, (count(r), rows)
        reads.append(time.perf_counter() - t0)
        # the first version after the base (base + 1 delta)
        t0 = time.perf_counter()
        with catalog(root, as_of=first + 1) as r:
            assert count(r) == n + CHANGE
        olds.append(time.perf_counter() - t0)
        # the seeding version: published before its base was written, it reads its one delta of N rows
        t0 = time.perf_counter()
        with catalog(root, as_of=first) as r:
            assert count(r) == n
        firsts.append(time.perf_counter() - t0)
    out["B_read"], out["B_as_of"], out["B_as_of_first"] = med(reads), med(olds), med(firsts)

    # A: the old way, on the same writer catalog (same tables, same rows), each change copied whole
    copies, reads = [], []
    for rep in range(REPS):
        add_change(con, root, nxt)
        nxt += CHANGE
        snap = root / f"copy-{rep}.duckdb"

        def copy():
            con.execute(f"ATTACH {sql_str(snap)} AS snap")
            con.execute("CREATE SCHEMA snap.catalog")
            for t in TABLES:
                con.execute(f"CREATE TABLE snap.catalog.{t} AS FROM catalog.{t}")
            con.execute("CHECKPOINT snap")
            con.execute("DETACH snap")

        copies.append(timed(copy))
    out["A_publish"] = med(copies)
    out["A_snapshot_bytes"] = snap.stat().st_size
    con.close()
    for rep in range(REPS):
        t0 = time.perf_counter()
        with duckdb.connect(str(root / f"copy-{rep}.duckdb"), read_only=True) as r:
            assert count(r) == n + REPS * CHANGE + (rep + 1) * CHANGE
        reads.append(time.perf_counter() - t0)
    out["A_read"] = med(reads)
    return out


# ---------------------------------------------------------------- C: DuckLake


def lake_con(meta: str):
    "A connection with the DuckLake extension (and for a SQLite catalog, sqlite) loaded from their wheels, offline."
    from artifact_bus.lake import extension_dir, load_extensions

    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(extension_dir()),
        }
    )
    load_extensions(con, ["ducklake"])
    if meta == "sqlite":  # its wheel is `duckdb-extension-sqlite`, not among the project's requirements
        from duckdb_extensions import import_extension

        import_extension("sqlite", con=con)
        con.execute("LOAD sqlite")
    return con


def attach_probe(url: str, meta: str) -> None:
    "Run as a second process: can it attach the lake read-only while the writer has it?"
    con = lake_con(meta)
    try:
        con.execute(f"ATTACH {sql_str(url)} AS lake (READ_ONLY)")
        print("attached, count(*) =", count(con, "SELECT count(*) FROM lake.jobs"))
    except duckdb.Error as e:
        print("refused:", " ".join(str(e).split())[:160])


def sqlite_available() -> str | None:
    "Why the SQLite catalog cannot be measured, or None if it can (the sqlite extension, installed from a wheel)."
    try:
        lake_con("sqlite").close()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means: not measured, and say why
        return " ".join(str(e).split())[:200]


def bench_lake(d: Path, n: int, meta: str) -> dict:
    url = f"ducklake:{d / 'meta.ducklake'}" if meta == "duckdb" else f"ducklake:sqlite:{d / 'meta.sqlite'}"
    out: dict = {}
    d.mkdir(parents=True)
    con = lake_con(meta)
    t0 = time.perf_counter()
    con.execute(f"ATTACH {sql_str(url)} AS lake (DATA_PATH {sql_str(str(d / 'data') + '/')})")
    con.execute(f"CREATE TABLE lake.jobs AS {jobs_sql(0, n)}")
    con.execute(f"CREATE TABLE lake.artifacts AS {artifacts_sql(0, n, segmented=True)}")
    out["seed_s"] = time.perf_counter() - t0
    first = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')").fetchall()[0][0]
    nxt, ins = n, []
    for _ in range(REPS):

        def change(s=nxt):
            con.execute("BEGIN TRANSACTION")
            con.execute(f"INSERT INTO lake.jobs {jobs_sql(s, CHANGE)}")
            con.execute(f"INSERT INTO lake.artifacts {artifacts_sql(s, CHANGE, segmented=False)}")
            con.execute("COMMIT")

        ins.append(timed(change))
        nxt += CHANGE
    out["C_publish"] = med(ins)
    # a second process, while this one (the writer) has the lake attached
    p = subprocess.run(
        [sys.executable, __file__, "--attach-probe", url, meta], capture_output=True, text=True, timeout=120
    )
    out["C_second_process"] = (p.stdout.strip() or p.stderr.strip()[-200:]).splitlines()[-1].replace(str(d), "<dir>")
    out["C_inlined"] = count(
        con,
        f"SELECT count(*) FROM ducklake_snapshots('lake') "
        f"WHERE snapshot_id > {first} AND changes::VARCHAR LIKE '%inlined%'",
    )
    con.close()
    out["C_meta_bytes"] = du(d.glob("meta.*"))
    out["C_files"] = sum(1 for _ in (d / "data").rglob("*.parquet"))
    reads, olds = [], []
    rows = n + REPS * CHANGE
    for _ in range(REPS):
        r = lake_con(meta)  # extension LOAD not timed (a reader process pays it once)
        t0 = time.perf_counter()
        r.execute(f"ATTACH {sql_str(url)} AS lake (READ_ONLY)")
        assert count(r, "SELECT count(*) FROM lake.artifacts") == rows
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert count(r, f"SELECT count(*) FROM lake.artifacts AT (VERSION => {first})") == n
        olds.append(time.perf_counter() - t0)
        r.close()
    out["C_read"], out["C_as_of"] = med(reads), med(olds)
    return out


# ---------------------------------------------------------------- report


def ms(s: float) -> str:
    return f"{s * 1000:,.1f} ms" if s < 10 else f"{s:,.1f} s"


def kb(b: int) -> str:
    return f"{b / 1024:,.0f} KB" if b < 10 * 2**20 else f"{b / 2**20:,.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 10,000 and 100,000 only")
    ap.add_argument("--sizes", type=int, nargs="+", help="catalog sizes (artifacts), instead of the defaults")
    ap.add_argument("--attach-probe", nargs=2, metavar=("URL", "META"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attach_probe:
        return attach_probe(*args.attach_probe)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    why_not_sqlite = sqlite_available() if duckdb.__version__ == "1.5.5" else "needs duckdb 1.5.5"
    metas = ["duckdb"] + ([] if why_not_sqlite else ["sqlite"])
    rows, notes = [], []
    t_all = time.perf_counter()
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="catalog-candidates-") as d:
            print(f"N = {n:,}: bus ...", file=sys.stderr, flush=True)
            b = bench_bus(Path(d) / "bus", n)
            size = f"{kb(b['B_snapshot_bytes'])} snapshot + {kb(b['B_delta_bytes'])} deltas"
            rows.append((n, "A copy all tables", b["A_publish"], kb(b["A_snapshot_bytes"]), b["A_read"], None))
            rows.append((n, "B versions (publish)", b["B_publish"], size, b["B_read"], b["B_as_of"]))
            notes.append(
                f"N = {n:,}: seeding the bus {ms(b['seed_s'])}, first publish + base {ms(b['first_publish_s'])}; "
                f"B time travel to that first version (its snapshot reads its one delta of N rows, not the base "
                f"written after it) {ms(b['B_as_of_first'])}"
            )
            for meta in metas if duckdb.__version__ == "1.5.5" else []:
                print(f"N = {n:,}: DuckLake ({meta}) ...", file=sys.stderr, flush=True)
                c = bench_lake(Path(d) / f"lake-{meta}", n, meta)
                size = f"{kb(c['C_meta_bytes'])} metadata, {c['C_files']} data files ({c['C_inlined']} changes inlined)"
                rows.append((n, f"C DuckLake, {meta} catalog", c["C_publish"], size, c["C_read"], c["C_as_of"]))
                notes.append(
                    f"N = {n:,}: DuckLake ({meta}) seed {ms(c['seed_s'])}; a second process attaching it read-only "
                    f"while the writer has it: {c['C_second_process']}"
                )
    print(f"\nCatalog of N artifacts (1 per job), a change of {CHANGE} jobs ({CHANGE} jobs + {CHANGE} artifacts rows)")
    print(f"(medians of {REPS}; reads: a fresh connection each, page cache warm).\n")
    print("| N | candidate | publish the change | what it writes / size | reader: open + count(*) | time travel |")
    print("|---:|---|---:|---|---:|---:|")
    for n, name, pub, size, read, old in rows:
        print(f"| {n:,} | {name} | {ms(pub)} | {size} | {ms(read)} | {'—' if old is None else ms(old)} |")
    print()
    for note in notes:
        print(f"- {note}")
    if why_not_sqlite:
        print(f"- DuckLake with a SQLite catalog not measured: {why_not_sqlite}")
    py, sysname = platform.python_version(), f"{platform.system()} {platform.machine()}"
    print(f"- machine: {os.cpu_count()} CPUs, {sysname}, Python {py}, duckdb {duckdb.__version__}")
    print(f"- total {time.perf_counter() - t_all:,.0f} s")


if __name__ == "__main__":
    main()
