"""Single-process write workloads (small, large) and the GROUP BY query over what they stored."""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from artifact_bus.core import sql_str

from .common import BUS_LABEL, BUS_SYSTEMS, GROUP_BY, SLOW_S, SYSTEMS, progress, total_rows
from .report import Results
from .systems import WRITERS, bus_ingest, iceberg_catalog


def run_writes(system: str, d: Path, tables, budget: float) -> dict:
    """Store `tables` one artifact at a time with `system` in fresh directory `d`, stopping after `budget` seconds;
    returns timings."""
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    w = WRITERS[system](d)
    done = 0
    for t in tables:
        w.write(t)
        done += 1
        if time.perf_counter() - t0 > budget and done < len(tables):
            break  # stopped: a lower bound
    w.close() if system != "ducklake" else None
    out = {
        "seconds": time.perf_counter() - t0,
        "writer": w,
        "done": done,
        "rows": sum(t.num_rows for t in tables[:done]),
    }
    if system in BUS_SYSTEMS:
        out["ingest"] = bus_ingest(w.root)
    return out


def write_workload(
    R: Results, name: str, tables, systems, reps: int, work: Path, query_reps: int, targets: dict, budget: float
) -> None:
    expected = total_rows(tables)
    slug = name.split()[0]
    order = [s for s in SYSTEMS if s in systems]
    times = {s: [] for s in order}
    submit_t, ingests = {s: [] for s in BUS_SYSTEMS}, {s: [] for s in BUS_SYSTEMS}
    errors, kept = {}, {}
    slow, partial = set(), {}
    for r in range(reps):
        rot = order[r % len(order) :] + order[: r % len(order)]
        for s in rot:
            if r and times[s] and times[s][0] > SLOW_S:
                slow.add(s)
                continue  # one run of a system this slow says enough; its output stays for the query
            d = work / slug / s
            old_w = kept.pop(s, None)
            if old_w is not None and s == "ducklake":
                old_w.close()
            try:
                out = run_writes(s, d, tables, budget)
            except Exception as e:
                errors[s] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                traceback.print_exc(file=sys.stderr)
                continue
            times[s].append(out["seconds"])
            if out["done"] < len(tables):
                partial[s] = out
            if s in BUS_SYSTEMS:
                submit_t[s].append(out["seconds"])
                ingests[s].append(out["ingest"])
            progress(f"{s} {out['seconds'] + out.get('ingest', {}).get('seconds', 0):.1f}s")
            kept[s] = out["writer"]  # the latest run's output, for the row check and the query
    for s in sorted(slow):
        R.notes.append(
            f"{name}: {s} ran once, not {reps} times (its first run took {times[s][0]:.0f} s > {SLOW_S:.0f} s)"
        )
    floor = statistics.median(times["floor"]) if times.get("floor") else None
    ratio = lambda xs: (statistics.median(xs) / floor) if (floor and xs) else None
    for s in order:
        if s in errors and not times[s]:
            R.na(name, WRITERS[s].label, errors[s])
            continue
        lb = (
            {
                "lower_bound": True,
                "note": f"stopped at the {budget:.0f} s budget after {partial[s]['done']} of {len(tables)} artifacts",
            }
            if s in partial
            else {}
        )
        if s in BUS_SYSTEMS:
            bus_rows(
                R,
                name,
                submit_t[s],
                ingests[s],
                ratio,
                targets.get("bus"),
                targets.get("bus_ratio"),
                who=BUS_LABEL[s],
                **lb,
            )
        else:
            R.add(name, WRITERS[s].label, times[s], ratio=ratio(times[s]), ratio_to="floor", **lb)
    for s, out in partial.items():
        R.notes.append(
            f"{name}: {s} was stopped at the {budget:.0f} s budget after {out['done']} of {len(tables)} artifacts: "
            f"its figure is a lower bound, and it is left out of the query"
        )
    # every system stored every row?
    counts = {}
    for s, w in kept.items():
        try:
            counts[s] = w.count()
        except Exception as e:
            counts[s] = f"{type(e).__name__}: {e}"
    bad = {s: c for s, c in counts.items() if c != (partial[s]["rows"] if s in partial else expected)}
    R.extra.setdefault("row_checks", {})[name] = {"expected": expected, "counts": counts}
    if bad:
        R.notes.append(f"{name}: row count mismatch (expected {expected}): {bad}")
    # the GROUP BY over everything stored, against one compacted Parquet file of the same rows
    try:
        query_workload(
            R,
            f"query after {name}",
            tables,
            {s: w for s, w in kept.items() if s not in partial},
            work / slug,
            query_reps,
        )
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        R.notes.append(f"query after {name} failed: {type(e).__name__}: {e}")
    for s, w in kept.items():
        if s == "ducklake":
            try:
                w.close()
            except Exception:
                pass
    shutil.rmtree(work / slug, ignore_errors=True)


def bus_rows(
    R: Results,
    name: str,
    submit_t,
    ingests,
    ratio,
    target,
    limit,
    conflicts=None,
    lower_bound=False,
    note=None,
    who="artifact_bus",
    **more,
) -> None:
    "The artifact_bus rows of a write workload: submit alone, until queryable, until ingest() returned, phases."
    q = [a + i["queryable_s"] for a, i in zip(submit_t, ingests)]
    tot = [a + i["seconds"] for a, i in zip(submit_t, ingests)]
    ok = lambda rr: None if (rr is None or limit is None) else (rr <= limit and (conflicts in (None, 0)))
    if lower_bound:
        more = {**more, "lower_bound": True, "note": note}
    R.add(name, f"{who}: submit() alone", submit_t, ratio=ratio(submit_t), ratio_to="floor", **more)
    rq = ratio(q)
    R.add(
        name,
        f"{who}: submit+ingest until queryable",
        q,
        ratio=rq,
        ratio_to="floor",
        target=target,
        met=ok(rq),
        ingests=ingests,
        **({"lower_bound": True} if lower_bound else {}),
    )
    rt = ratio(tot)
    R.add(
        name,
        f"{who}: submit+ingest() returned (+compact, exports)",
        tot,
        ratio=rt,
        ratio_to="floor",
        target=target,
        met=ok(rt),
    )
    med = lambda k: statistics.median(i[k] for i in ingests)
    R.add(
        name,
        f"  ingest phases: publish x{ingests[-1]['publishes']} {med('publish_s'):.2f} s, compaction "
        f"{med('compact_s'):.2f} s "
        f"({ingests[-1]['compacted']} segments), exports {med('exports_s'):.2f} s",
        [i["seconds"] for i in ingests],
        ratio=ratio([i["seconds"] for i in ingests]),
        ratio_to="floor",
    )


def time_query(run, reps: int) -> list[float]:
    run()  # warm-up: metadata, page cache
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return out


def query_workload(R: Results, name: str, tables, kept: dict, work: Path, reps: int) -> None:
    compact = work / "compacted.parquet"
    pq.write_table(pa.concat_tables(tables), compact)
    n_files = len(tables)
    base_con = duckdb.connect()
    runs = {
        "compacted": (
            "one compacted Parquet file (pyarrow)",
            lambda: base_con.execute(GROUP_BY.format(src=f"read_parquet({sql_str(compact)})")).fetchall(),
        )
    }
    if "floor" in kept:
        glob = sql_str(kept["floor"].d / "*.parquet")
        runs["floor"] = (
            f"the floor's {n_files} Parquet files (read_parquet glob)",
            lambda: base_con.execute(GROUP_BY.format(src=f"read_parquet({glob})")).fetchall(),
        )
    closers = []
    if "duckdb" in kept:
        c = duckdb.connect(str(kept["duckdb"].path), read_only=True)
        closers.append(c)
        runs["duckdb"] = ("DuckDB direct: table fills", lambda c=c: c.execute(GROUP_BY.format(src="fills")).fetchall())
    if "ducklake" in kept:
        c2 = kept["ducklake"].con
        runs["ducklake"] = ("DuckLake: lake.fills", lambda: c2.execute(GROUP_BY.format(src="lake.fills")).fetchall())
    if "delta" in kept:
        from deltalake import DeltaTable

        ds = DeltaTable(kept["delta"].path).to_pyarrow_dataset()
        dc = duckdb.connect()
        dc.register("delta_ds", ds)
        closers.append(dc)
        runs["delta"] = (
            "delta-rs: DuckDB over to_pyarrow_dataset()",
            lambda: dc.execute(GROUP_BY.format(src="delta_ds")).fetchall(),
        )
    if "iceberg" in kept:
        itbl = iceberg_catalog(kept["iceberg"].d).load_table("bench.fills")
        ic = duckdb.connect()
        closers.append(ic)

        def ice():
            arrow = itbl.scan(selected_fields=("symbol", "qty", "price")).to_arrow()  # noqa: F841 (DuckDB reads it by name)
            return ic.execute(GROUP_BY.format(src="arrow")).fetchall()

        runs["iceberg"] = ("pyiceberg: scan().to_arrow() + DuckDB", ice)
    if "artifact_bus" in kept:
        from artifact_bus.catalog import catalog

        bc = catalog(kept["artifact_bus"].root)
        closers.append(bc)
        runs["artifact_bus"] = (
            "artifact_bus: bus.fills via catalog()",
            lambda: bc.execute(GROUP_BY.format(src="bus.fills")).fetchall(),
        )
    ref = sorted(runs["compacted"][1]())
    res = {}
    for k, (label, fn) in runs.items():
        got = sorted(fn())
        if len(got) != len(ref) or any(
            a[0] != b[0] or not math.isclose(a[1], b[1], rel_tol=1e-9) for a, b in zip(got, ref)
        ):
            R.notes.append(f"{name}: {label} returned a different answer from the compacted file")
        res[k] = time_query(fn, reps)
    base = statistics.median(res["compacted"])
    for k, (label, _) in runs.items():
        rr = statistics.median(res[k]) / base
        is_bus = k == "artifact_bus"
        R.add(
            name,
            label,
            res[k],
            ratio=rr,
            ratio_to="compacted file",
            target="≤ 1.5x compacted" if is_bus else None,
            met=(rr <= 1.5) if is_bus else None,
        )
    for c in closers:
        c.close()
    base_con.close()
