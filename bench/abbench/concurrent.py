"""Concurrent producers: several processes store into one target at once."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

import duckdb
import pyarrow as pa

from .common import BUS_LABEL, BUS_SYSTEMS, SLOW_S, SYSTEMS, mp_context, progress, tables_small
from .report import Results
from .systems import WRITERS, DuckLake, Floor, Protocol, bus_ingest, iceberg_catalog
from .writes import bus_rows


def _conc_worker(system: str, d: str, k: int, n: int, budget: float, barrier, q) -> None:
    "One producer process: build its tables, wait for the start, store them one at a time, report."
    try:
        d = Path(d)
        tables = tables_small(n, seed0=100_000 + k * 1_000)
        retries, errors = 0, 0
        if system == "floor":
            w = Floor(d / "files", prefix=f"w{k}-")
        elif system in ("protocol", *BUS_SYSTEMS):
            w = WRITERS[system](d / "jobs" if system == "protocol" else d, prefix=f"w{k}-")
        elif system == "delta":
            from deltalake import write_deltalake
        elif system == "iceberg":
            import logging

            class Count(logging.Handler):  # pyiceberg retries commit conflicts itself and logs each retry
                n = 0

                def emit(self, record):
                    if "concurrent update" in record.getMessage():
                        Count.n += 1

            lg = logging.getLogger("pyiceberg.table")
            lg.addHandler(Count())
            lg.propagate = False
            lg.setLevel(logging.WARNING)
            cat = iceberg_catalog(d)
            tbl = cat.load_table("bench.fills")
        barrier.wait(timeout=300)
        t0 = time.perf_counter()
        done = 0
        for t in tables:
            if done and time.perf_counter() - t0 > budget:
                break  # stopped: a lower bound
            done += 1
            if system in ("floor", "protocol", *BUS_SYSTEMS):
                w.write(t)
            elif system == "duckdb":
                while True:  # open read-write per insert, as several producers of one file must
                    try:
                        with duckdb.connect(str(d / "fills.duckdb")) as c:
                            c.register("__t", t)
                            c.execute("INSERT INTO fills SELECT * FROM __t")
                        break
                    except duckdb.IOException as e:
                        if "lock" not in str(e).lower():
                            raise
                        retries += 1
                        time.sleep(0.005)
            elif system == "delta":
                for attempt in range(1000):
                    try:
                        write_deltalake(str(d / "fills"), t, mode="append")
                        break
                    except Exception:
                        retries += 1
                        time.sleep(0.005)
                else:
                    errors += 1
            elif system == "iceberg":
                for attempt in range(1000):
                    try:
                        tbl.append(t)
                        break
                    except Exception:  # CommitFailedException, or sqlite 'database is locked'
                        retries += 1
                        time.sleep(0.005)
                        try:
                            tbl = cat.load_table("bench.fills")
                        except Exception:
                            pass
                else:
                    errors += 1
        if system == "iceberg":
            retries += Count.n
        if system in ("protocol", *BUS_SYSTEMS):
            w.close()  # a batch commits here
        q.put({"k": k, "t0": t0, "t1": time.perf_counter(), "retries": retries, "errors": errors, "done": done})
    except BaseException as e:
        q.put({"k": k, "error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})
        try:
            barrier.abort()
        except Exception:
            pass


def conc_setup(system: str, d: Path, schema_table: pa.Table) -> None:
    "Create the empty target before the producers start (not timed), so they only append."
    d.mkdir(parents=True, exist_ok=True)
    empty = schema_table.slice(0, 0)
    if system == "duckdb":
        with duckdb.connect(str(d / "fills.duckdb")) as c:
            c.register("__t", empty)
            c.execute("CREATE TABLE fills AS SELECT * FROM __t")
    elif system == "delta":
        from deltalake import write_deltalake

        write_deltalake(str(d / "fills"), empty, mode="append")
    elif system == "iceberg":
        cat = iceberg_catalog(d)
        cat.create_namespace("bench")
        cat.create_table("bench.fills", schema=empty.schema)


def conc_count(system: str, d: Path) -> int:
    if system == "floor":
        return Floor(d / "files").count()
    if system == "duckdb":
        with duckdb.connect(str(d / "fills.duckdb"), read_only=True) as c:
            return c.execute("SELECT count(*) FROM fills").fetchone()[0]
    if system == "delta":
        from deltalake import DeltaTable

        return DeltaTable(str(d / "fills")).to_pyarrow_dataset().count_rows()
    if system == "iceberg":
        return iceberg_catalog(d).load_table("bench.fills").scan().count()
    if system == "protocol":
        return Protocol(d / "jobs").count()
    if system in BUS_SYSTEMS:
        from artifact_bus.catalog import catalog

        with catalog(d / "bus") as c:
            return c.execute("SELECT count(*) FROM bus.fills").fetchone()[0]


def run_concurrent(system: str, d: Path, procs: int, each: int, budget: float) -> dict:
    shutil.rmtree(d, ignore_errors=True)
    from artifact_bus.testing import fills_table

    conc_setup(system, d, fills_table(1))
    ctx = mp_context()
    barrier, q = ctx.Barrier(procs + 1), ctx.Queue()
    ps = [ctx.Process(target=_conc_worker, args=(system, str(d), k, each, budget, barrier, q)) for k in range(procs)]
    for p in ps:
        p.start()
    barrier.wait(timeout=300)
    got = [q.get(timeout=1800) for _ in ps]
    for p in ps:
        p.join(timeout=60)
    errs = [g for g in got if "error" in g]
    if errs:
        raise RuntimeError(errs[0]["error"] + "\n" + errs[0].get("tb", ""))
    wall = max(g["t1"] for g in got) - min(g["t0"] for g in got)
    out = {
        "seconds": wall,
        "retries": sum(g["retries"] for g in got),
        "errors": sum(g["errors"] for g in got),
        "done": sum(g["done"] for g in got),
    }
    if system in BUS_SYSTEMS:
        out["ingest"] = bus_ingest(d / "bus")
    out["rows"] = conc_count(system, d)
    return out


def concurrent_workload(R: Results, systems, reps: int, procs: int, each: int, work: Path, budget: float) -> None:
    name = f"concurrent {procs}x{each}"
    order = [s for s in SYSTEMS if s in systems]
    res = {s: [] for s in order}
    errors = {}
    for r in range(reps):
        for s in order:
            if s == "ducklake":
                continue
            if r and res[s] and res[s][0]["seconds"] > SLOW_S:
                if r == 1:
                    R.notes.append(
                        f"{name}: {s} ran once, not {reps} times (its first run took {res[s][0]['seconds']:.0f} s > "
                        f"{SLOW_S:.0f} s)"
                    )
                continue
            try:
                res[s].append(run_concurrent(s, work / "concurrent" / s, procs, each, budget))
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
            R.na(name, DuckLake.label, "the DuckDB-file catalog cannot be attached by a second process")
            continue
        if not res[s]:
            R.na(name, WRITERS[s].label, errors.get(s, "failed"))
            continue
        retries = sum(x["retries"] for x in res[s])
        fails = sum(x["errors"] for x in res[s])
        wrong = [(x["rows"], x["done"] * 1000) for x in res[s] if x["rows"] != x["done"] * 1000]
        if wrong:
            R.notes.append(f"{name}: {s} stored {wrong[0][0]} rows, expected {wrong[0][1]}")
        more = {"retries": [x["retries"] for x in res[s]], "errors": [x["errors"] for x in res[s]]}
        cut = [x for x in res[s] if x["done"] < procs * each]
        if cut:
            more.update(
                lower_bound=True,
                note=f"stopped at the {budget:.0f} s budget after {cut[0]['done']} of {procs * each} artifacts",
            )
            R.notes.append(
                f"{name}: {s} was stopped at the {budget:.0f} s budget after {cut[0]['done']} of {procs * each} "
                f"artifacts: "
                f"its figure is a lower bound"
            )
        if s in BUS_SYSTEMS:
            bus_rows(
                R,
                name,
                [x["seconds"] for x in res[s]],
                [x["ingest"] for x in res[s]],
                ratio,
                "≤ 2x floor, 0 retries",
                2.0,
                conflicts=retries + fails,
                who=BUS_LABEL[s],
                **more,
            )
            R.add(
                name,
                f"{BUS_LABEL[s]}: conflicts/retries",
                unit="count",
                value=retries,
                target="0",
                met=retries == 0 and fails == 0,
            )
        else:
            R.add(
                name,
                WRITERS[s].label,
                [x["seconds"] for x in res[s]],
                ratio=ratio([x["seconds"] for x in res[s]]),
                ratio_to="floor",
                **more,
            )
            if s == "delta":
                R.add(
                    name,
                    f"delta: retries seen by the caller (failures {fails})",
                    unit="count",
                    value=retries,
                    note="delta-rs retries commit conflicts internally, uncounted",
                )
            elif s not in ("floor", "protocol"):
                what = "lock conflicts, retried" if s == "duckdb" else "commit conflicts, retried"
                R.add(name, f"{s}: {what} (failures {fails})", unit="count", value=retries)
