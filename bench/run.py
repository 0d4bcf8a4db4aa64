#!/usr/bin/env python
"""The artifact_bus benchmark harness (issue 5): every system, every workload, one run, same data, same disk.

    python bench/run.py [--quick] [--only NAMES] [--systems NAMES] [--json PATH] [--reps N]
                        [--catalog-artifacts N] [--ingest-mem-mb N] [--workdir DIR] [--keep]

Workloads (`--only`, comma-separated): small, concurrent, large, memory, catalog, ingest-mem, daemon.
The GROUP BY query is measured at the end of `small` and `large`, over what they stored.

Systems (`--systems`, comma-separated): floor, duckdb, delta, iceberg, ducklake, artifact_bus.

Prints a fixed-width table (workload, system, median, min, ratio vs the floor, target, met?) and writes
every figure, with the machine and versions, as JSON (default bench/results/latest.json) and the same
table as Markdown beside it (latest.md). Nothing is asserted: a missed target is reported, not raised.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from artifact_bus.catalog import sql_str
from artifact_bus.core import fsync_all, fsync_dir, fsync_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

WORKLOADS = ("small", "concurrent", "large", "memory", "catalog", "ingest-mem", "daemon")
SYSTEMS = ("floor", "protocol", "duckdb", "delta", "iceberg", "ducklake", "artifact_bus", "artifact_bus_batch")
BUS_SYSTEMS = ("artifact_bus", "artifact_bus_batch")
BUS_LABEL = {"artifact_bus": "artifact_bus", "artifact_bus_batch": "artifact_bus batch()"}

MODES = {
    "quick": dict(reps=1, small=50, conc_procs=4, conc_each=10, large_n=5, large_rows=200_000,
                  catalog_artifacts=5_000, ingest_mem_mb=100, query_reps=5, catalog_query_reps=20, daemon_jobs=6,
                  daemon_preload_rows=300_000),
    "full": dict(reps=3, small=500, conc_procs=4, conc_each=100, large_n=5, large_rows=2_000_000,
                 catalog_artifacts=100_000, ingest_mem_mb=2048, query_reps=5, catalog_query_reps=20, daemon_jobs=20,
                 daemon_preload_rows=3_000_000),
}
SLOW_S = 10.0   # a system whose first repetition of a workload took longer is not repeated (noted in the output)
BUDGET_S = {"quick": 8.0, "full": 30.0}   # a system still writing after this long is stopped: its figure is a lower bound
BUDGET = [60.0]
GROUP_BY = "SELECT symbol, sum(qty * price) AS notional FROM {src} GROUP BY symbol"
KB = 1024
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------- helpers

def rss_bytes() -> int:
    "Current resident set size of this process."
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since the last `reset_peak_rss()` (VmHWM). Not
    getrusage().ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child spawned by this
    (large) harness would report the harness's own peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"): return int(line.split()[1]) * KB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB


def reset_peak_rss() -> bool:
    "Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
        return True
    except OSError: return False


def version(dist: str) -> str | None:
    try: return metadata.version(dist)
    except metadata.PackageNotFoundError: return None


_CTX = None

def mp_context():
    """Worker processes come from a fork server started once, early, with the libraries imported: a worker
    starts in milliseconds, not the second a spawn takes, and never inherits the harness's memory or threads."""
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["__main__", "numpy", "pyarrow", "pyarrow.parquet", "duckdb", "artifact_bus.submit",
                                     "artifact_bus.ingest", "artifact_bus.testing", "deltalake", "pyiceberg.catalog.sql"])
    return _CTX


def tables_small(n: int, seed0: int = 0) -> list[pa.Table]:
    from artifact_bus.testing import fills_table
    return [fills_table(1000, seed0 + i, f"run-{seed0 + i:06d}") for i in range(n)]


def total_rows(tables) -> int:
    return sum(t.num_rows for t in tables)


def ducklake_connection() -> duckdb.DuckDBPyConnection:
    "An in-memory DuckDB connection with the ducklake extension loaded offline, as the package loads it."
    from artifact_bus.lake import extension_dir, load_extensions
    con = duckdb.connect(config={"extension_directory": str(extension_dir()), "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    load_extensions(con, ["ducklake"])
    return con


def progress(msg: str) -> None:
    "A short progress mark on the current '... workload' line."
    print(f" [{msg}]", end="", flush=True)


# ---------------------------------------------------------------------------------------------- writers
# Each writer stores artifacts one at a time into a fresh directory, the way a user of that system would.

class Floor:
    label = "floor: pyarrow write_table+fsync+rename"
    def __init__(self, d: Path, prefix: str = ""):
        self.d, self.prefix, self.i = d, prefix, 0
        d.mkdir(parents=True, exist_ok=True)
    def write(self, t: pa.Table) -> None:
        tmp = self.d / f".{self.prefix}{self.i:06d}.parquet.tmp"
        pq.write_table(t, tmp)
        fsync_file(tmp)
        os.rename(tmp, self.d / f"{self.prefix}{self.i:06d}.parquet")
        self.i += 1
    def close(self): pass
    def count(self) -> int:
        return duckdb.execute(f"SELECT count(*) FROM read_parquet({sql_str(self.d / '*.parquet')})").fetchone()[0]


class DuckDBDirect:
    label = "DuckDB direct: INSERT into one file"
    def __init__(self, d: Path, prefix: str = ""):
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / "fills.duckdb"
        self.con = duckdb.connect(str(self.path))
        self.created = False
    def write(self, t: pa.Table) -> None:
        self.con.register("__t", t)
        if not self.created:
            self.con.execute("CREATE TABLE IF NOT EXISTS fills AS SELECT * FROM __t LIMIT 0"); self.created = True
        self.con.execute("INSERT INTO fills SELECT * FROM __t")   # autocommit: one transaction per artifact
        self.con.unregister("__t")
    def close(self): self.con.close()
    def count(self) -> int:
        with duckdb.connect(str(self.path), read_only=True) as c:
            return c.execute("SELECT count(*) FROM fills").fetchone()[0]


class Delta:
    label = "delta-rs: write_deltalake append"
    def __init__(self, d: Path, prefix: str = ""):
        from deltalake import write_deltalake
        self.path, self._w = str(d / "fills"), write_deltalake
        d.mkdir(parents=True, exist_ok=True)
    def write(self, t: pa.Table) -> None:
        self._w(self.path, t, mode="append")
    def close(self): pass
    def count(self) -> int:
        from deltalake import DeltaTable
        return DeltaTable(self.path).to_pyarrow_dataset().count_rows()


def iceberg_catalog(d: Path):
    from pyiceberg.catalog.sql import SqlCatalog
    (d / "warehouse").mkdir(parents=True, exist_ok=True)
    return SqlCatalog("bench", uri=f"sqlite:///{d / 'catalog.db'}", warehouse=f"file://{d / 'warehouse'}")


class Iceberg:
    label = "pyiceberg: append, SQL catalog on sqlite"
    def __init__(self, d: Path, prefix: str = ""):
        self.d = d
        self.cat = iceberg_catalog(d)
        self.tbl = None
    def write(self, t: pa.Table) -> None:
        if self.tbl is None:
            self.cat.create_namespace_if_not_exists("bench")
            self.tbl = self.cat.create_table_if_not_exists("bench.fills", schema=t.schema)
        self.tbl.append(t)
    def close(self):
        try: self.cat.engine.dispose()
        except Exception: pass
    def count(self) -> int:
        return iceberg_catalog(self.d).load_table("bench.fills").scan().count()


class DuckLake:
    label = "DuckLake: INSERT, DuckDB-file catalog"
    def __init__(self, d: Path, prefix: str = ""):
        d.mkdir(parents=True, exist_ok=True)
        self.con = ducklake_connection()
        self.con.execute(f"ATTACH {sql_str('ducklake:' + str(d / 'meta.ducklake'))} AS lake (DATA_PATH {sql_str(str(d / 'data') + '/')})")
        self.created = False
    def write(self, t: pa.Table) -> None:
        self.con.register("__t", t)
        if not self.created:
            self.con.execute("CREATE TABLE IF NOT EXISTS lake.fills AS SELECT * FROM __t LIMIT 0"); self.created = True
        self.con.execute("INSERT INTO lake.fills SELECT * FROM __t")
        self.con.unregister("__t")
    def close(self): self.con.close()
    def count(self) -> int:
        return self.con.execute("SELECT count(*) FROM lake.fills").fetchone()[0]


class Protocol:
    """The job protocol's own file operations, in plain Python, and nothing else: the folder, the Parquet
    file, manifest.json and COMMIT, one parallel round of fsyncs, the rename, the fsync of the inbox.
    No validation, lineage or config: the least any producer following the protocol can do."""
    label = "protocol floor: the job protocol's file operations alone"
    MANIFEST = b'{"protocol": 1}'
    def __init__(self, d: Path, prefix: str = ""):
        self.d, self.prefix, self.i = d, prefix, 0
        self.tmp, self.inbox = d / "inbox" / ".tmp", d / "inbox"
        self.tmp.mkdir(parents=True, exist_ok=True)
    def write(self, t: pa.Table) -> None:
        name = f"{self.prefix}{self.i:06d}"; self.i += 1
        job = self.tmp / name; job.mkdir()
        files = [job / "fills.parquet", job / "manifest.json", job / "COMMIT"]
        pq.write_table(t, files[0])
        files[1].write_bytes(self.MANIFEST); files[2].write_bytes(b"sha256:0")
        fsync_all(files, [job])   # one parallel round, as the package does it
        os.rename(job, self.inbox / name)
        fsync_dir(self.inbox)
    def close(self): pass
    def count(self) -> int:
        return duckdb.execute(f"SELECT count(*) FROM read_parquet({sql_str(self.inbox / '*' / '*.parquet')})").fetchone()[0]


class Bus:
    label = "artifact_bus: submit()"
    def __init__(self, d: Path, prefix: str = ""):
        from artifact_bus.submit import submit
        self.root, self._submit, self.i, self.prefix = d / "bus", submit, 0, prefix
        d.mkdir(parents=True, exist_ok=True)   # the root's parent must exist, else submit() spools (a missing mount)
    def write(self, t: pa.Table) -> None:
        self._submit(t, "fills", run_id=f"bench-{self.prefix}{self.i}", producer="bench", root=self.root, required=True)
        self.i += 1
    def close(self): pass
    def count(self) -> int:
        from artifact_bus.catalog import catalog
        with catalog(self.root) as c:
            return c.execute("SELECT count(*) FROM bus.fills").fetchone()[0]


class BusBatch(Bus):
    label = "artifact_bus batch(): submit() in a batch"
    def __init__(self, d: Path, prefix: str = ""):
        super().__init__(d, prefix)
        from artifact_bus.submit import batch
        self.batch = batch(root=self.root, required=True)
        self._submit = lambda t, kind, root, required, **kw: self.batch.submit(t, kind, **kw)
    def close(self): self.batch.flush()


WRITERS = {"floor": Floor, "protocol": Protocol, "duckdb": DuckDBDirect, "delta": Delta, "iceberg": Iceberg, "ducklake": DuckLake,
           "artifact_bus": Bus, "artifact_bus_batch": BusBatch}


class _Phases:
    """Time the phases of one ingest() from the outside: wraps the functions ingest() calls (publish, compaction,
    exports) for the duration of the call; the library is not changed. The data is queryable when the publish
    that follows the last batch returns."""
    NAMES = ("publish", "compact_kinds", "run_exports")
    def __enter__(self):
        import importlib
        m = importlib.import_module("artifact_bus.ingest")   # the module: `artifact_bus.ingest` is also the function
        self.m, self.saved, self.calls = m, {}, []
        for n in self.NAMES:
            f = getattr(m, n, None)
            if f is None: continue
            self.saved[n] = f
            def wrap(*a, __f=f, __n=n, **k):
                t0 = time.perf_counter()
                try: return __f(*a, **k)
                finally: self.calls.append((__n, t0, time.perf_counter()))
            setattr(m, n, wrap)
        return self
    def __exit__(self, *exc):
        for n, f in self.saved.items(): setattr(self.m, n, f)


def bus_ingest(root: Path) -> dict:
    """ingest() as a user calls it (compaction and golden exports included). Returns the seconds until it
    returned, until the data was queryable (the publish after the last batch), and per phase."""
    from artifact_bus.ingest import ingest
    with _Phases() as ph:
        t0 = time.perf_counter()
        rep = ingest(root)
        t1 = time.perf_counter()
    pubs = [c for c in ph.calls if c[0] == "publish"]
    queryable = (pubs[rep.batches - 1][2] - t0) if rep.batches and len(pubs) >= rep.batches else t1 - t0
    phase = lambda n: sum(c[2] - c[1] for c in ph.calls if c[0] == n)
    return {"seconds": t1 - t0, "queryable_s": queryable, "publish_s": phase("publish"), "publishes": len(pubs),
            "compact_s": phase("compact_kinds"), "compacted": getattr(rep, "compacted", None), "exports_s": phase("run_exports"),
            "accepted": len(rep.accepted), "rejected": len(rep.rejected), "batches": rep.batches}


# ---------------------------------------------------------------------------------------------- results

class Results:
    def __init__(self):
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.extra: dict = {}

    def add(self, workload, system, samples=None, *, unit="s", ratio=None, ratio_to=None, target=None, met=None,
            note=None, value=None, **more) -> dict:
        samples = [x for x in (samples or []) if x is not None]
        row = {"workload": workload, "system": system, "unit": unit, "samples": samples,
               "median": statistics.median(samples) if samples else value, "min": min(samples) if samples else value,
               "ratio": ratio, "ratio_to": ratio_to, "target": target, "met": met, "note": note, **more}
        self.rows.append(row)
        return row

    def na(self, workload, system, reason) -> None:
        self.add(workload, system, unit="n/a", note=reason)


def fmt_value(v, unit) -> str:
    if v is None: return "n/a"
    if unit == "s": return f"{v:.3f} s" if v < 100 else f"{v:.1f} s"
    if unit == "ms": return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "MB": return f"{v:.0f} MB"
    if unit == "count": return f"{v:.0f}"
    return f"{v}"


def table_lines(rows, markdown=False) -> list[str]:
    head = ["workload", "system", "median", "min", "ratio", "target", "met?"]
    body = []
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        ratio = "" if r["ratio"] is None else ("≥" if r.get("lower_bound") else "") + f"{r['ratio']:.2f}x"
        system = r["system"] + (f" [{r['note']}]" if r.get("note") and (r["unit"] == "n/a" or r.get("lower_bound")) else "")
        body.append([r["workload"], system, fmt_value(r["median"], r["unit"]) if r["unit"] != "n/a" else "n/a",
                     fmt_value(r["min"], r["unit"]) if r["unit"] != "n/a" else "", ratio, r["target"] or "", met])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
        return out
    w = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    w[1] = min(w[1], 80)
    line = lambda cells: "  ".join(
        (c if i == 1 and len(c) <= w[1] else (c[: w[1] - 1] + "…" if i == 1 else c)).ljust(w[i]) if i < 2 else c.rjust(w[i])
        for i, c in enumerate(cells))
    return [line(head), "  ".join("-" * x for x in w)] + [line(b) for b in body]


# ---------------------------------------------------------------------------------------------- single-process write workloads

def run_writes(system: str, d: Path, tables) -> dict:
    "Store `tables` one artifact at a time with `system` in fresh directory `d`; returns timings."
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    w = WRITERS[system](d)
    done = 0
    for t in tables:
        w.write(t); done += 1
        if time.perf_counter() - t0 > BUDGET[0] and done < len(tables): break   # stopped: a lower bound
    w.close() if system != "ducklake" else None
    out = {"seconds": time.perf_counter() - t0, "writer": w, "done": done, "rows": sum(t.num_rows for t in tables[:done])}
    if system in BUS_SYSTEMS:
        out["ingest"] = bus_ingest(w.root)
    return out


def write_workload(R: Results, name: str, tables, systems, reps: int, work: Path, query_reps: int, targets: dict) -> None:
    expected = total_rows(tables)
    slug = name.split()[0]
    order = [s for s in SYSTEMS if s in systems]
    times = {s: [] for s in order}
    submit_t, ingests = {s: [] for s in BUS_SYSTEMS}, {s: [] for s in BUS_SYSTEMS}
    errors, kept = {}, {}
    slow, partial = set(), {}
    for r in range(reps):
        rot = order[r % len(order):] + order[: r % len(order)]
        for s in rot:
            if r and times[s] and times[s][0] > SLOW_S:
                slow.add(s); continue   # one run of a system this slow says enough; its output stays for the query
            d = work / slug / s
            old_w = kept.pop(s, None)
            if old_w is not None and s == "ducklake": old_w.close()
            try:
                out = run_writes(s, d, tables)
            except Exception as e:
                errors[s] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                traceback.print_exc(file=sys.stderr)
                continue
            times[s].append(out["seconds"])
            if out["done"] < len(tables): partial[s] = out
            if s in BUS_SYSTEMS:
                submit_t[s].append(out["seconds"]); ingests[s].append(out["ingest"])
            progress(f"{s} {out['seconds'] + out.get('ingest', {}).get('seconds', 0):.1f}s")
            kept[s] = out["writer"]   # the latest run's output, for the row check and the query
    for s in sorted(slow):
        R.notes.append(f"{name}: {s} ran once, not {reps} times (its first run took {times[s][0]:.0f} s > {SLOW_S:.0f} s)")
    floor = statistics.median(times["floor"]) if times.get("floor") else None
    ratio = lambda xs: (statistics.median(xs) / floor) if (floor and xs) else None
    for s in order:
        if s in errors and not times[s]:
            R.na(name, WRITERS[s].label, errors[s]); continue
        lb = {"lower_bound": True, "note": f"stopped at the {BUDGET[0]:.0f} s budget after {partial[s]['done']} of {len(tables)} artifacts"} \
            if s in partial else {}
        if s in BUS_SYSTEMS:
            bus_rows(R, name, submit_t[s], ingests[s], ratio, targets.get("bus"), targets.get("bus_ratio"), who=BUS_LABEL[s], **lb)
        else:
            R.add(name, WRITERS[s].label, times[s], ratio=ratio(times[s]), ratio_to="floor", **lb)
    for s, out in partial.items():
        R.notes.append(f"{name}: {s} was stopped at the {BUDGET[0]:.0f} s budget after {out['done']} of {len(tables)} artifacts: "
                       f"its figure is a lower bound, and it is left out of the query")
    # every system stored every row?
    counts = {}
    for s, w in kept.items():
        try: counts[s] = w.count()
        except Exception as e: counts[s] = f"{type(e).__name__}: {e}"
    bad = {s: c for s, c in counts.items() if c != (partial[s]["rows"] if s in partial else expected)}
    R.extra.setdefault("row_checks", {})[name] = {"expected": expected, "counts": counts}
    if bad: R.notes.append(f"{name}: row count mismatch (expected {expected}): {bad}")
    # the GROUP BY over everything stored, against one compacted Parquet file of the same rows
    try:
        query_workload(R, f"query after {name}", tables, {s: w for s, w in kept.items() if s not in partial}, work / slug,
                       query_reps)
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        R.notes.append(f"query after {name} failed: {type(e).__name__}: {e}")
    for s, w in kept.items():
        if s == "ducklake":
            try: w.close()
            except Exception: pass
    shutil.rmtree(work / slug, ignore_errors=True)


def bus_rows(R: Results, name: str, submit_t, ingests, ratio, target, limit, conflicts=None, lower_bound=False, note=None,
             who="artifact_bus", **more) -> None:
    "The artifact_bus rows of a write workload: submit alone, until queryable, until ingest() returned, phases."
    q = [a + i["queryable_s"] for a, i in zip(submit_t, ingests)]
    tot = [a + i["seconds"] for a, i in zip(submit_t, ingests)]
    ok = lambda rr: None if (rr is None or limit is None) else (rr <= limit and (conflicts in (None, 0)))
    if lower_bound: more = {**more, "lower_bound": True, "note": note}
    R.add(name, f"{who}: submit() alone", submit_t, ratio=ratio(submit_t), ratio_to="floor", **more)
    rq = ratio(q)
    R.add(name, f"{who}: submit+ingest until queryable", q, ratio=rq, ratio_to="floor", target=target, met=ok(rq),
          ingests=ingests, **({"lower_bound": True} if lower_bound else {}))
    rt = ratio(tot)
    R.add(name, f"{who}: submit+ingest() returned (+compact, exports)", tot, ratio=rt, ratio_to="floor", target=target, met=ok(rt))
    med = lambda k: statistics.median(i[k] for i in ingests)
    R.add(name, f"  ingest phases: publish x{ingests[-1]['publishes']} {med('publish_s'):.2f} s, compaction {med('compact_s'):.2f} s "
                f"({ingests[-1]['compacted']} segments), exports {med('exports_s'):.2f} s", [i["seconds"] for i in ingests],
          ratio=ratio([i["seconds"] for i in ingests]), ratio_to="floor")


def time_query(run, reps: int) -> list[float]:
    run()  # warm-up: metadata, page cache
    out = []
    for _ in range(reps):
        t0 = time.perf_counter(); run(); out.append(time.perf_counter() - t0)
    return out


def query_workload(R: Results, name: str, tables, kept: dict, work: Path, reps: int) -> None:
    compact = work / "compacted.parquet"
    pq.write_table(pa.concat_tables(tables), compact)
    n_files = len(tables)
    base_con = duckdb.connect()
    runs = {"compacted": ("one compacted Parquet file (pyarrow)", lambda: base_con.execute(GROUP_BY.format(src=f"read_parquet({sql_str(compact)})")).fetchall())}
    if "floor" in kept:
        glob = sql_str(kept["floor"].d / "*.parquet")
        runs["floor"] = (f"the floor's {n_files} Parquet files (read_parquet glob)", lambda: base_con.execute(GROUP_BY.format(src=f"read_parquet({glob})")).fetchall())
    closers = []
    if "duckdb" in kept:
        c = duckdb.connect(str(kept["duckdb"].path), read_only=True); closers.append(c)
        runs["duckdb"] = ("DuckDB direct: table fills", lambda c=c: c.execute(GROUP_BY.format(src="fills")).fetchall())
    if "ducklake" in kept:
        c2 = kept["ducklake"].con
        runs["ducklake"] = ("DuckLake: lake.fills", lambda: c2.execute(GROUP_BY.format(src="lake.fills")).fetchall())
    if "delta" in kept:
        from deltalake import DeltaTable
        ds = DeltaTable(kept["delta"].path).to_pyarrow_dataset()
        dc = duckdb.connect(); dc.register("delta_ds", ds); closers.append(dc)
        runs["delta"] = ("delta-rs: DuckDB over to_pyarrow_dataset()", lambda: dc.execute(GROUP_BY.format(src="delta_ds")).fetchall())
    if "iceberg" in kept:
        itbl = iceberg_catalog(kept["iceberg"].d).load_table("bench.fills")
        ic = duckdb.connect(); closers.append(ic)
        def ice():
            arrow = itbl.scan(selected_fields=("symbol", "qty", "price")).to_arrow()
            return ic.execute(GROUP_BY.format(src="arrow")).fetchall()
        runs["iceberg"] = ("pyiceberg: scan().to_arrow() + DuckDB", ice)
    if "artifact_bus" in kept:
        from artifact_bus.catalog import catalog
        bc = catalog(kept["artifact_bus"].root); closers.append(bc)
        runs["artifact_bus"] = ("artifact_bus: bus.fills via catalog()", lambda: bc.execute(GROUP_BY.format(src="bus.fills")).fetchall())
    ref = sorted(runs["compacted"][1]())
    res = {}
    for k, (label, fn) in runs.items():
        got = sorted(fn())
        if len(got) != len(ref) or any(a[0] != b[0] or not math.isclose(a[1], b[1], rel_tol=1e-9) for a, b in zip(got, ref)):
            R.notes.append(f"{name}: {label} returned a different answer from the compacted file")
        res[k] = time_query(fn, reps)
    base = statistics.median(res["compacted"])
    for k, (label, _) in runs.items():
        rr = statistics.median(res[k]) / base
        is_bus = k == "artifact_bus"
        R.add(name, label, res[k], ratio=rr, ratio_to="compacted file", target="≤ 1.5x compacted" if is_bus else None,
              met=(rr <= 1.5) if is_bus else None)
    for c in closers: c.close()
    base_con.close()


# ---------------------------------------------------------------------------------------------- concurrent producers

def _conc_worker(system: str, d: str, k: int, n: int, budget: float, barrier, q) -> None:
    "One producer process: build its tables, wait for the start, store them one at a time, report."
    try:
        d = Path(d)
        tables = tables_small(n, seed0=100_000 + k * 1_000)
        retries, errors = 0, 0
        if system == "floor": w = Floor(d / "files", prefix=f"w{k}-")
        elif system in ("protocol", *BUS_SYSTEMS): w = WRITERS[system](d / "jobs" if system == "protocol" else d, prefix=f"w{k}-")
        elif system == "delta":
            from deltalake import write_deltalake
        elif system == "iceberg":
            import logging
            class Count(logging.Handler):   # pyiceberg retries commit conflicts itself and logs each retry
                n = 0
                def emit(self, record):
                    if "concurrent update" in record.getMessage(): Count.n += 1
            lg = logging.getLogger("pyiceberg.table"); lg.addHandler(Count()); lg.propagate = False; lg.setLevel(logging.WARNING)
            cat = iceberg_catalog(d); tbl = cat.load_table("bench.fills")
        barrier.wait(timeout=300)
        t0 = time.perf_counter()
        done = 0
        for t in tables:
            if done and time.perf_counter() - t0 > budget: break   # stopped: a lower bound
            done += 1
            if system in ("floor", "protocol", *BUS_SYSTEMS):
                w.write(t)
            elif system == "duckdb":
                while True:   # open read-write per insert, as several producers of one file must
                    try:
                        with duckdb.connect(str(d / "fills.duckdb")) as c:
                            c.register("__t", t); c.execute("INSERT INTO fills SELECT * FROM __t")
                        break
                    except duckdb.IOException as e:
                        if "lock" not in str(e).lower(): raise
                        retries += 1; time.sleep(0.005)
            elif system == "delta":
                for attempt in range(1000):
                    try: write_deltalake(str(d / "fills"), t, mode="append"); break
                    except Exception:
                        retries += 1; time.sleep(0.005)
                else: errors += 1
            elif system == "iceberg":
                for attempt in range(1000):
                    try: tbl.append(t); break
                    except Exception:   # CommitFailedException, or sqlite 'database is locked'
                        retries += 1; time.sleep(0.005)
                        try: tbl = cat.load_table("bench.fills")
                        except Exception: pass
                else: errors += 1
        if system == "iceberg": retries += Count.n
        if system in ("protocol", *BUS_SYSTEMS): w.close()   # a batch commits here
        q.put({"k": k, "t0": t0, "t1": time.perf_counter(), "retries": retries, "errors": errors, "done": done})
    except BaseException as e:
        q.put({"k": k, "error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})
        try: barrier.abort()
        except Exception: pass


def conc_setup(system: str, d: Path, schema_table: pa.Table) -> None:
    "Create the empty target before the producers start (not timed), so they only append."
    d.mkdir(parents=True, exist_ok=True)
    empty = schema_table.slice(0, 0)
    if system == "duckdb":
        with duckdb.connect(str(d / "fills.duckdb")) as c:
            c.register("__t", empty); c.execute("CREATE TABLE fills AS SELECT * FROM __t")
    elif system == "delta":
        from deltalake import write_deltalake
        write_deltalake(str(d / "fills"), empty, mode="append")
    elif system == "iceberg":
        cat = iceberg_catalog(d); cat.create_namespace("bench"); cat.create_table("bench.fills", schema=empty.schema)


def conc_count(system: str, d: Path) -> int:
    if system == "floor": return Floor(d / "files").count()
    if system == "duckdb":
        with duckdb.connect(str(d / "fills.duckdb"), read_only=True) as c: return c.execute("SELECT count(*) FROM fills").fetchone()[0]
    if system == "delta":
        from deltalake import DeltaTable
        return DeltaTable(str(d / "fills")).to_pyarrow_dataset().count_rows()
    if system == "iceberg": return iceberg_catalog(d).load_table("bench.fills").scan().count()
    if system == "protocol": return Protocol(d / "jobs").count()
    if system in BUS_SYSTEMS:
        from artifact_bus.catalog import catalog
        with catalog(d / "bus") as c: return c.execute("SELECT count(*) FROM bus.fills").fetchone()[0]


def run_concurrent(system: str, d: Path, procs: int, each: int) -> dict:
    shutil.rmtree(d, ignore_errors=True)
    from artifact_bus.testing import fills_table
    conc_setup(system, d, fills_table(1))
    ctx = mp_context()
    barrier, q = ctx.Barrier(procs + 1), ctx.Queue()
    ps = [ctx.Process(target=_conc_worker, args=(system, str(d), k, each, BUDGET[0], barrier, q)) for k in range(procs)]
    for p in ps: p.start()
    barrier.wait(timeout=300)
    got = [q.get(timeout=1800) for _ in ps]
    for p in ps: p.join(timeout=60)
    errs = [g for g in got if "error" in g]
    if errs: raise RuntimeError(errs[0]["error"] + "\n" + errs[0].get("tb", ""))
    wall = max(g["t1"] for g in got) - min(g["t0"] for g in got)
    out = {"seconds": wall, "retries": sum(g["retries"] for g in got), "errors": sum(g["errors"] for g in got),
           "done": sum(g["done"] for g in got)}
    if system in BUS_SYSTEMS:
        out["ingest"] = bus_ingest(d / "bus")
    out["rows"] = conc_count(system, d)
    return out


def concurrent_workload(R: Results, systems, reps: int, procs: int, each: int, work: Path) -> None:
    name = f"concurrent {procs}x{each}"
    order = [s for s in SYSTEMS if s in systems]
    res = {s: [] for s in order}
    errors = {}
    for r in range(reps):
        for s in order:
            if s == "ducklake": continue
            if r and res[s] and res[s][0]["seconds"] > SLOW_S:
                if r == 1: R.notes.append(f"{name}: {s} ran once, not {reps} times (its first run took {res[s][0]['seconds']:.0f} s > {SLOW_S:.0f} s)")
                continue
            try:
                res[s].append(run_concurrent(s, work / "concurrent" / s, procs, each))
                progress(f"{s} {res[s][-1]['seconds'] + res[s][-1].get('ingest', {}).get('seconds', 0):.1f}s")
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                errors[s] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            shutil.rmtree(work / "concurrent" / s, ignore_errors=True)
    floor = [x["seconds"] for x in res.get("floor", [])]
    fmed = statistics.median(floor) if floor else None
    ratio = lambda xs: statistics.median(xs) / fmed if (fmed and xs) else None
    for s in order:
        if s == "ducklake":
            R.na(name, DuckLake.label, "the DuckDB-file catalog cannot be attached by a second process"); continue
        if not res[s]:
            R.na(name, WRITERS[s].label, errors.get(s, "failed")); continue
        retries = sum(x["retries"] for x in res[s]); fails = sum(x["errors"] for x in res[s])
        wrong = [(x["rows"], x["done"] * 1000) for x in res[s] if x["rows"] != x["done"] * 1000]
        if wrong: R.notes.append(f"{name}: {s} stored {wrong[0][0]} rows, expected {wrong[0][1]}")
        more = {"retries": [x["retries"] for x in res[s]], "errors": [x["errors"] for x in res[s]]}
        cut = [x for x in res[s] if x["done"] < procs * each]
        if cut:
            more.update(lower_bound=True, note=f"stopped at the {BUDGET[0]:.0f} s budget after {cut[0]['done']} of {procs * each} artifacts")
            R.notes.append(f"{name}: {s} was stopped at the {BUDGET[0]:.0f} s budget after {cut[0]['done']} of {procs * each} artifacts: "
                           f"its figure is a lower bound")
        if s in BUS_SYSTEMS:
            bus_rows(R, name, [x["seconds"] for x in res[s]], [x["ingest"] for x in res[s]], ratio,
                     "≤ 2x floor, 0 retries", 2.0, conflicts=retries + fails, who=BUS_LABEL[s], **more)
            R.add(name, f"{BUS_LABEL[s]}: conflicts/retries", unit="count", value=retries, target="0", met=retries == 0 and fails == 0)
        else:
            R.add(name, WRITERS[s].label, [x["seconds"] for x in res[s]], ratio=ratio([x["seconds"] for x in res[s]]),
                  ratio_to="floor", **more)
            if s == "delta":
                R.add(name, f"delta: retries seen by the caller (failures {fails})", unit="count", value=retries,
                      note="delta-rs retries commit conflicts internally, uncounted")
            elif s not in ("floor", "protocol"):
                what = "lock conflicts, retried" if s == "duckdb" else "commit conflicts, retried"
                R.add(name, f"{s}: {what} (failures {fails})", unit="count", value=retries)


# ---------------------------------------------------------------------------------------------- memory of one large store

def _mem_child(system: str, d: str, rows: int, q) -> None:
    "Build one large table, then store it with `system`; report RSS after imports, after the build, and the peak."
    try:
        from artifact_bus.testing import fills_table
        import artifact_bus.submit  # noqa: F401  (imports in the baseline, as for every system)
        if system in ("delta",): import deltalake  # noqa: F401
        if system in ("iceberg",): import pyiceberg.catalog.sql  # noqa: F401
        d = Path(d)
        reset_peak_rss()
        r0 = rss_bytes()
        t = fills_table(rows, 7, "mem")
        nbytes = t.nbytes
        r1, peak_build = rss_bytes(), peak_rss_bytes()
        reset_ok = reset_peak_rss()   # from here the peak is the store's, on top of the table already in memory
        pool0 = pa.total_allocated_bytes()
        t0 = time.perf_counter()
        if system != "build":
            w = WRITERS[system](d / system)
            w.write(t)
            if system != "ducklake": w.close()
        secs = time.perf_counter() - t0
        q.put({"rss_imports": r0, "rss_built": r1, "peak_build": peak_build, "peak": peak_rss_bytes(), "reset_ok": reset_ok,
               "nbytes": nbytes, "pool_before": pool0, "pool_max": pa.default_memory_pool().max_memory(), "seconds": secs})
    except BaseException as e:
        q.put({"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})


def in_child(target, *args, timeout=1800) -> dict:
    ctx = mp_context()
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    try: out = q.get(timeout=timeout)
    finally: p.join(timeout=120)
    if "error" in out: raise RuntimeError(out["error"] + "\n" + out.get("tb", ""))
    return out


def memory_workload(R: Results, systems, rows: int, work: Path) -> None:
    name = f"submit memory, 1x{rows:,} rows"
    base = in_child(_mem_child, "build", str(work / "mem"), rows)
    nb = base["nbytes"]
    if nb < 100 * MB:
        R.notes.append(f"{name}: a {nb / MB:.0f} MB table is small next to the fixed ~50-70 MB every writer adds (Parquet "
                       f"encoder buffers, Arrow thread pools; see the floor): the ratio is judged at 2,000,000 rows (full mode)")
    R.extra["memory_baseline"] = base
    R.add(name, f"(table nbytes {nb / MB:.0f} MB; RSS after building it: +{(base['rss_built'] - base['rss_imports']) / MB:.0f} MB over imports)",
          unit="MB", value=nb / MB)
    for s in [s for s in SYSTEMS if s in systems and s not in ("protocol", "artifact_bus_batch")]:
        try: m = in_child(_mem_child, s, str(work / "mem"), rows)
        except Exception as e:
            traceback.print_exc(file=sys.stderr); R.na(name, WRITERS[s].label, str(e).splitlines()[0][:160]); continue
        finally: shutil.rmtree(work / "mem", ignore_errors=True)
        peak = m["peak"] - m["rss_imports"]   # the process's peak during the store, above its imports: table + the store's own
        extra = m["peak"] - m["rss_built"]     # what the store added on top of the table already in memory
        ratio = (nb + max(0, extra)) / nb      # the table plus what the store needed on top of it, over the table
        is_bus = s == "artifact_bus"
        R.add(name, f"{WRITERS[s].label.split(':')[0]}: peak RSS added by the store (process peak {peak / MB:.0f} MB above imports)",
              unit="MB", value=extra / MB, ratio=ratio, ratio_to="(table + added) / table",
              target="≤ 1.5x table" if is_bus else None, met=(ratio <= 1.5) if is_bus else None,
              peak_above_imports_mb=peak / MB, pool_max_mb=m["pool_max"] / MB, seconds=m["seconds"], reset_ok=m["reset_ok"])


# ---------------------------------------------------------------------------------------------- catalog on N artifacts

def write_jobs_fast(root: Path, n_artifacts: int, per_job: int = 10) -> dict:
    """Write `n_artifacts` tiny artifacts as committed jobs straight into the inbox, following job protocol v1
    (manifest.json, Parquet files, COMMIT, rename into inbox/) — the way a producer in another language would —
    but without fsync: this is set-up, not a measured write. 5 kinds, `per_job` artifacts per job,
    submitted_at spread over 100 days."""
    import io
    from datetime import datetime, timedelta, timezone
    from artifact_bus.core import new_job_id
    from artifact_bus.protocol import checksum_bytes, schema_to_json, lineage
    kinds = ["fills", "positions", "events", "features", "signals"]
    t = pa.table({"symbol": ["SYM000"], "qty": [1.0]})
    buf = io.BytesIO(); pq.write_table(t, buf); data = buf.getvalue()
    ck, schema = checksum_bytes(data), schema_to_json(t.schema)
    lin = lineage()
    inbox, tmp = root / "inbox", root / "inbox" / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    n_jobs = math.ceil(n_artifacts / per_job)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    made = 0
    for j in range(n_jobs):
        jid = new_job_id()
        d = tmp / jid; d.mkdir()
        arts = []
        for a in range(min(per_job, n_artifacts - made)):
            kind = kinds[a % len(kinds)]
            name = f"{kind}-{a // len(kinds) + 1}"
            (d / f"{name}.parquet").write_bytes(data)
            arts.append({"name": name, "kind": kind, "file": f"{name}.parquet", "rows": 1, "bytes": len(data),
                         "checksum": ck, "schema": schema})
        made += len(arts)
        sub = start + timedelta(days=100 * j / n_jobs)
        m = {"protocol": 1, "job_id": jid, "run_id": f"run-{j:06d}", "producer": "bench-catalog",
             "submitted_at": sub.isoformat(), "key": None, "meta": {"j": j}, "lineage": lin, "artifacts": arts}
        raw = json.dumps(m, indent=1).encode()
        (d / "manifest.json").write_bytes(raw)
        (d / "COMMIT").write_bytes(checksum_bytes(raw).encode())
        os.rename(d, inbox / jid)
    return {"jobs": n_jobs, "artifacts": made, "last_day": (start + timedelta(days=99)).isoformat()}


def catalog_workload(R: Results, n: int, reps: int, work: Path, note: str) -> None:
    from artifact_bus.catalog import catalog
    name = f"catalog, {n:,} artifacts"
    root = work / "catalog" / "bus"
    shutil.rmtree(root.parent, ignore_errors=True)
    t0 = time.perf_counter()
    info = write_jobs_fast(root, n)
    t_write = time.perf_counter() - t0
    # Set-up, not a target: one batch and no compaction (documented config keys in the bus's bus.toml). With the
    # defaults (batches of 500 jobs, each re-creating the views over every file, then compacting 100,000 tiny
    # files) the same ingest takes minutes more; the catalog tables queried below are the same either way.
    (root / "bus.toml").write_text(f"batch_size = {info['jobs']}\ncompact_min_files = 0\n")
    ing = bus_ingest(root)
    R.extra["catalog_build"] = {**info, "write_s": t_write, "ingest": ing, "note": note,
                                "config": {"batch_size": info["jobs"], "compact_min_files": 0}}
    R.add(name, f"(set-up: {info['jobs']:,} jobs written in {t_write:.0f} s; one ingest(), batch_size={info['jobs']}, "
                f"no compaction: seconds)", [ing["seconds"]])
    if ing["accepted"] != info["jobs"]:
        R.notes.append(f"{name}: ingest accepted {ing['accepted']} of {info['jobs']} jobs")
    opens = []
    for _ in range(reps):
        t0 = time.perf_counter(); c = catalog(root); c.execute("SELECT 1").fetchall(); opens.append(time.perf_counter() - t0); c.close()
    con = catalog(root)
    mid_run = f"run-{info['jobs'] // 2:06d}"
    queries = {
        "listing: ORDER BY ingested_at DESC LIMIT 50": ("SELECT * FROM catalog.artifacts ORDER BY ingested_at DESC LIMIT 50", []),
        "filter: WHERE run_id = ?": ("SELECT * FROM catalog.artifacts WHERE run_id = ?", [mid_run]),
        "filter: WHERE kind = ? AND submitted_at > ?": ("SELECT * FROM catalog.artifacts WHERE kind = ? AND submitted_at > ?::TIMESTAMPTZ",
                                                        ["fills", info["last_day"]]),
        "count(*) GROUP BY kind": ("SELECT kind, count(*) FROM catalog.artifacts GROUP BY kind", []),
    }
    total = con.execute("SELECT count(*) FROM catalog.artifacts").fetchone()[0]
    if total != n: R.notes.append(f"{name}: catalog holds {total} artifacts, expected {n}")
    for label, (sql, params) in queries.items():
        ts = time_query(lambda: con.execute(sql, params).fetchall(), reps)
        ms = [x * 1000 for x in ts]
        med = statistics.median(ms)
        R.add(name, label, ms, unit="ms", target="< 50 ms", met=med < 50, rows=len(con.execute(sql, params).fetchall()))
    con.close()
    R.add(name, "catalog() open + SELECT 1", [x * 1000 for x in opens], unit="ms", note="informational")
    shutil.rmtree(root.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- ingest memory vs artifact size

def _ingest_child(root: str, what: str, q) -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY); os.dup2(null, 1)   # DuckDB's progress bar would flood the table
        from artifact_bus.ingest import ingest
        from artifact_bus.export import export
        import artifact_bus.catalog  # noqa: F401
        reset_peak_rss()
        r0 = rss_bytes()
        t0 = time.perf_counter()
        if what == "ingest":
            rep = ingest(root, exports=False); info = {"accepted": len(rep.accepted), "rejected": len(rep.rejected)}
        else:
            info = {k: v.get("status") for k, v in export(root).items()}
        q.put({"rss_imports": r0, "peak": peak_rss_bytes(), "seconds": time.perf_counter() - t0, "info": info})
    except BaseException as e:
        q.put({"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})


def ingest_mem_workload(R: Results, target_mb: int, work: Path, full_size: bool) -> None:
    from artifact_bus.testing import fills_table
    from artifact_bus.submit import submit
    d = work / "ingest-mem"; shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
    free = shutil.disk_usage(d).free
    want = target_mb * MB
    # the source file, submit's copy of it (moved into the store by ingest) and the fills export: ~3x, plus 2 GB slack
    if free < 3 * want + 2 * 1024 * MB:
        scaled = max(64 * MB, (free - 2 * 1024 * MB) // 3)
        R.notes.append(f"ingest-mem: only {free / MB:.0f} MB free on {d}: artifact scaled down from {target_mb} MB to {scaled / MB:.0f} MB")
        want = scaled
    chunk = fills_table(2_000_000 if want >= 200 * MB else 500_000, 11, "big")
    src = d / "big.parquet"
    t0 = time.perf_counter()
    pq.write_table(chunk, src)           # one chunk, to learn its size on disk
    copies = max(1, math.ceil(want / src.stat().st_size))
    with pq.ParquetWriter(src, chunk.schema) as w:   # the same chunk repeated: the content does not matter here
        for _ in range(copies): w.write_table(chunk)
    size = src.stat().st_size
    rows = pq.ParquetFile(src).metadata.num_rows
    gen_s = time.perf_counter() - t0
    name = f"ingest memory, one {size / MB:,.0f} MB artifact"
    root = d / "bus"
    t0 = time.perf_counter(); submit(str(src), "fills", run_id="big", producer="bench", root=root, required=True); sub_s = time.perf_counter() - t0
    src.unlink()
    R.add(name, f"(file: {rows:,} rows written in {gen_s:.1f} s; submit(path) seconds)", [sub_s])
    ing = in_child(_ingest_child, str(root), "ingest")
    extra = (ing["peak"] - ing["rss_imports"]) / MB
    R.add(name, f"ingest(exports=False): peak RSS above imports ({ing['seconds']:.1f} s)", unit="MB", value=extra,
          target="< 300 MB", met=extra < 300, seconds=ing["seconds"])
    ex = in_child(_ingest_child, str(root), "export")
    extra2 = (ex["peak"] - ex["rss_imports"]) / MB
    R.add(name, f"its golden exports (export()): peak RSS above imports ({ex['seconds']:.1f} s)", unit="MB", value=extra2,
          note="informational: default ingest() runs these after publishing", seconds=ex["seconds"])
    R.extra["ingest_mem"] = {"bytes": size, "rows": rows, "ingest": ing, "export": ex, "submit_s": sub_s, "full_size": full_size}
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- daemon latency

def _daemon_run(work: Path, jobs: int, *extra: str) -> dict:
    "One run of bench/daemon_latency.py; its JSON, or an 'error'."
    out = work / f"daemon_latency{'-'.join(extra)}.json"
    try:
        p = subprocess.run([sys.executable, str(HERE / "daemon_latency.py"), "--jobs", str(jobs), "--out", str(out), *extra],
                           capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "BENCH_WORKDIR": str(work)})
    except subprocess.TimeoutExpired:
        return {"error": "daemon_latency.py timed out"}
    if p.returncode != 0 or not out.exists():
        return {"error": f"daemon_latency.py exited {p.returncode}: {p.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.read_text())


def daemon_workload(R: Results, jobs: int, work: Path, preload_rows: int) -> None:
    name = "daemon submit->queryable"
    data = _daemon_run(work, jobs)
    if "error" in data:
        R.na(name, "artifact_bus daemon", data["error"]); return
    R.extra["daemon_latency"] = data
    s = data["summary"]
    lat = data["samples_ms"]["latency"]
    p50 = s["submit -> queryable, daemon"]["p50_ms"]
    R.add(name, f"submit->queryable p50 ({jobs} jobs; p90 {s['submit -> queryable, daemon']['p90_ms']:.0f} ms)", lat,
          unit="ms", target="p50 < 500 ms", met=p50 < 500, p50_ms=p50)
    R.rows[-1]["median"] = p50
    for label in ("bare submit() (baseline)", "direct ingest() of 1 job"):
        if label in s: R.add(name, label + " p50", unit="ms", value=s[label]["p50_ms"])
    # the same on a store whose per-kind export has real work: exports deferred (the default) and after every cycle
    n2 = min(jobs, 10)
    name2 = f"daemon submit->queryable, store of {preload_rows:,} fills rows ({n2} jobs)"
    runs = {"default": _daemon_run(work, n2, "--preload-rows", str(preload_rows), "--no-baseline"),
            "delay0": _daemon_run(work, n2, "--preload-rows", str(preload_rows), "--no-baseline", "--exports-delay", "0")}
    R.extra["daemon_latency_preloaded"] = runs
    base = runs["delay0"].get("summary", {}).get("submit -> queryable, daemon", {}).get("p50_ms")
    for key, label in (("delay0", "exports after every cycle (--exports-delay 0)"), ("default", "exports once the inbox is quiet (default)")):
        d = runs[key]
        if "error" in d:
            R.na(name2, label, d["error"]); continue
        q = d["summary"]["submit -> queryable, daemon"]
        is_default = key == "default"
        R.add(name2, f"{label}: p50 (p90 {q['p90_ms']:.0f} ms)", d["samples_ms"]["latency"], unit="ms",
              ratio=(q["p50_ms"] / base) if base else None, ratio_to="exports after every cycle",
              target="p50 < 500 ms" if is_default else None, met=(q["p50_ms"] < 500) if is_default else None, p50_ms=q["p50_ms"])
        R.rows[-1]["median"] = q["p50_ms"]


# ---------------------------------------------------------------------------------------------- machine

def machine(work: Path) -> dict:
    def cpu_model():
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"): return line.split(":", 1)[1].strip()
        except OSError: pass
        return platform.processor()
    def mem_total():
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal"): return int(line.split()[1]) * KB
        except OSError: return None
    def disk():
        p = str(work.resolve()); best = ("", "?", "?")
        try:
            for line in open("/proc/mounts"):
                dev, mnt, fs = line.split()[:3]
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1] if best[1] != "?" else ""):
                    best = (dev, mnt, fs)
        except OSError: pass
        u = shutil.disk_usage(work)
        return {"path": p, "device": best[0], "mount": best[1], "fstype": best[2], "total_gb": round(u.total / 1e9, 1),
                "free_gb": round(u.free / 1e9, 1)}
    def git(*a):
        try: return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=5).stdout.strip() or None
        except Exception: return None
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "loadavg_start": [round(x, 2) for x in os.getloadavg()], "mem_gb": round((mem_total() or 0) / 1e9, 1),
            "python": platform.python_version(), "kernel": platform.release(), "platform": platform.platform(),
            "disk": disk(), "git_commit": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "versions": {d: version(d) for d in ("artifact_bus", "duckdb", "pyarrow", "deltalake", "pyiceberg", "sqlalchemy",
                                                  "duckdb-extension-ducklake", "duckdb-extensions", "numpy")}}


def disk_probe(work: Path, n: int = 200) -> dict:
    """What the disk charges for the operations the job protocol uses, in the work folder, now: creating
    an empty file, creating a folder, renaming, and fsyncing a small new file (median of n, in ms)."""
    d = work / "probe"; d.mkdir()
    def med(fn):
        ts = []
        for i in range(n):
            t0 = time.perf_counter(); fn(i); ts.append(time.perf_counter() - t0)
        return round(statistics.median(ts) * 1e3, 3)
    out = {"create_file_ms": med(lambda i: os.close(os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))),
           "mkdir_ms": med(lambda i: os.mkdir(d / f"d{i}")),
           "rename_ms": med(lambda i: os.rename(d / f"f{i}", d / f"g{i}"))}
    def write_sync(i):
        fd = os.open(d / f"s{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try: os.write(fd, b"x" * 4096); os.fsync(fd)
        finally: os.close(fd)
    out["create_write_fsync_ms"] = med(write_sync)
    shutil.rmtree(d, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes and one repetition: under a minute")
    ap.add_argument("--only", default=",".join(WORKLOADS), help=f"workloads, comma-separated (default all: {','.join(WORKLOADS)})")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"systems, comma-separated (default all: {','.join(SYSTEMS)})")
    ap.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the results (default bench/results/latest.json)")
    ap.add_argument("--reps", type=int, help="repetitions of each timed workload (quick 1, full 3)")
    ap.add_argument("--catalog-artifacts", type=int, help="artifacts in the catalog workload (quick 5,000, full 100,000)")
    ap.add_argument("--ingest-mem-mb", type=int, help="size of the ingest-memory artifact (quick 100, full 2048)")
    ap.add_argument("--workdir", type=Path, help="where the systems write (default a fresh folder under bench/results/)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args(argv)
    mode = "quick" if a.quick else "full"
    P = dict(MODES[mode])
    BUDGET[0] = BUDGET_S[mode]
    if a.reps: P["reps"] = a.reps
    if a.catalog_artifacts: P["catalog_artifacts"] = a.catalog_artifacts
    if a.ingest_mem_mb: P["ingest_mem_mb"] = a.ingest_mem_mb
    only = [w.strip() for w in a.only.split(",") if w.strip()]
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    for w in only:
        if w not in WORKLOADS: ap.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    for s in systems:
        if s not in SYSTEMS: ap.error(f"unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    if "floor" not in systems: systems.insert(0, "floor")   # ratios need it
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=a.workdir or RESULTS))
    os.chdir(REPO)   # artifact_bus reads pyproject.toml from the working directory, as a user in this repo would
    R = Results()
    info = machine(work)
    info["disk_probe"] = disk_probe(work)
    started = time.perf_counter()
    print(f"artifact_bus bench ({mode}): {info['cpus']} CPUs, {info['mem_gb']} GB, Python {info['python']}, kernel {info['kernel']}; "
          f"disk {info['disk']['device']} ({info['disk']['fstype']}) at {work}", flush=True)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v), flush=True)
    dp = info["disk_probe"]
    print(f"disk, in the work folder (median ms): create a file {dp['create_file_ms']}, mkdir {dp['mkdir_ms']}, "
          f"rename {dp['rename_ms']}, create+write 4 KiB+fsync {dp['create_write_fsync_ms']}", flush=True)
    timings = {}

    def step(label, fn, *args):
        t0 = time.perf_counter()
        print(f"... {label}", end="", flush=True)
        try: fn(*args)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            R.notes.append(f"{label} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        timings[label] = time.perf_counter() - t0
        print(f" {timings[label]:.1f} s", flush=True)

    if "small" in only:
        tables = tables_small(P["small"])
        step(f"small: {P['small']} x 1,000 rows", write_workload, R, f"small {P['small']}x1000", tables, systems, P["reps"], work,
             P["query_reps"], {"bus": "≤ 2x floor", "bus_ratio": 2.0})
    if "concurrent" in only:
        step(f"concurrent: {P['conc_procs']} procs x {P['conc_each']}", concurrent_workload, R, systems, P["reps"],
             P["conc_procs"], P["conc_each"], work)
    if "large" in only:
        from artifact_bus.testing import fills_table
        big = [fills_table(P["large_rows"], 1000 + i, f"large-{i}") for i in range(P["large_n"])]
        step(f"large: {P['large_n']} x {P['large_rows']:,} rows", write_workload, R, f"large {P['large_n']}x{P['large_rows']:,}",
             big, [s for s in systems if s != "artifact_bus_batch"],   # five large jobs: nothing for a batch to share
             P["reps"], work, P["query_reps"], {"bus": "≤ 1.1x floor", "bus_ratio": 1.1})
        del big
    if "memory" in only:
        step(f"memory: one {P['large_rows']:,}-row store", memory_workload, R, systems, P["large_rows"], work)
    if "catalog" in only:
        note = "" if P["catalog_artifacts"] >= 100_000 else f"N={P['catalog_artifacts']:,}, not the issue's 100,000 ({mode} mode or --catalog-artifacts)"
        if note: R.notes.append(f"catalog: {note}")
        step(f"catalog: {P['catalog_artifacts']:,} artifacts", catalog_workload, R, P["catalog_artifacts"], P["catalog_query_reps"], work, note)
    if "ingest-mem" in only:
        if P["ingest_mem_mb"] < 2048: R.notes.append(f"ingest-mem: {P['ingest_mem_mb']} MB artifact, not the issue's 2 GB ({mode} mode or --ingest-mem-mb)")
        step(f"ingest memory: {P['ingest_mem_mb']} MB artifact", ingest_mem_workload, R, P["ingest_mem_mb"], work, P["ingest_mem_mb"] >= 2048)
    if "daemon" in only:
        step(f"daemon latency: {P['daemon_jobs']} jobs", daemon_workload, R, P["daemon_jobs"], work, P["daemon_preload_rows"])

    total = time.perf_counter() - started
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if max(info["loadavg_start"][0], info["loadavg_end"][0]) > 0.75 * (os.cpu_count() or 1):
        R.notes.append(f"the machine was busy with other work (1-minute load {info['loadavg_start'][0]} at start, "
                       f"{info['loadavg_end'][0]} at end, on {os.cpu_count()} CPUs): seconds are inflated and noisy; compare ratios")
    if mode == "quick" and (P["small"] < 500 or P["conc_each"] < 100 or P["large_rows"] < 2_000_000):
        R.notes.insert(0, f"quick mode: small {P['small']}x1000, concurrent {P['conc_procs']}x{P['conc_each']}, "
                          f"large {P['large_n']}x{P['large_rows']:,}, {P['reps']} repetition(s): ratios are indicative, run `make bench` for the issue's sizes")
    R.notes.append("durability differs: the floor and artifact_bus fsync every data file; DuckDB and DuckLake fsync their WAL/catalog on commit; "
                   "delta-rs makes no fsync call and pyiceberg fsyncs only its sqlite catalog (measured with strace -c)")
    lines = table_lines(R.rows)
    print()
    print("\n".join(lines))
    for n in R.notes: print(f"note: {n}")
    print(f"total {total:.1f} s")
    result = {"bench": "artifact_bus", "issue": 5, "mode": mode, "params": P, "workloads": only, "systems": systems,
              "machine": info, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "total_seconds": total,
              "step_seconds": timings, "results": R.rows, "notes": R.notes, "extra": R.extra}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = a.json.with_suffix(".md")
    v = info["versions"]
    md.write_text(
        f"Measured {result['measured_at']} ({mode} mode, {P['reps']} repetition(s), total {total:.0f} s) on "
        f"{info['cpus']} × {info['cpu_model']}, {info['mem_gb']} GB RAM, {info['disk']['fstype']} on {info['disk']['device']}, "
        f"Linux {info['kernel']}, Python {info['python']}, load {info['loadavg_start'][0]}→{info['loadavg_end'][0]}; "
        f"in the work folder creating a file took {dp['create_file_ms']} ms, a folder {dp['mkdir_ms']} ms, a rename {dp['rename_ms']} ms, "
        f"creating, writing and fsyncing 4 KiB {dp['create_write_fsync_ms']} ms (medians); artifact_bus {v['artifact_bus']} (git {info['git_commit']}"
        f"{', dirty' if info['git_dirty'] else ''}), duckdb {v['duckdb']}, pyarrow {v['pyarrow']}, deltalake {v['deltalake']}, "
        f"pyiceberg {v['pyiceberg']}, ducklake extension {v['duckdb-extension-ducklake']}.\n\n"
        + "\n".join(table_lines(R.rows, markdown=True)) + "\n\n" + "".join(f"- {n}\n" for n in R.notes))
    print(f"wrote {a.json} and {md}")
    if not a.keep: shutil.rmtree(work, ignore_errors=True)
    else: print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
