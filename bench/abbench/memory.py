"""Memory: the peak RSS of one large store per system, and of ingest() and export() on one large artifact."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .common import MB, SYSTEMS, mp_context, peak_rss_bytes, reset_peak_rss, rss_bytes
from .report import Results
from .systems import WRITERS


def _mem_child(system: str, d: str, rows: int, q) -> None:
    "Build one large table, then store it with `system`; report RSS after imports, after the build, and the peak."
    try:
        import artifact_bus.submit  # noqa: F401  (imports in the baseline, as for every system)
        from artifact_bus.testing import fills_table

        if system in ("delta",):
            import deltalake  # noqa: F401
        if system in ("iceberg",):
            import pyiceberg.catalog.sql  # noqa: F401
        d = Path(d)
        reset_peak_rss()
        r0 = rss_bytes()
        t = fills_table(rows, 7, "mem")
        nbytes = t.nbytes
        r1, peak_build = rss_bytes(), peak_rss_bytes()
        reset_ok = reset_peak_rss()  # from here the peak is the store's, on top of the table already in memory
        pool0 = pa.total_allocated_bytes()
        t0 = time.perf_counter()
        if system != "build":
            w = WRITERS[system](d / system)
            w.write(t)
            if system != "ducklake":
                w.close()
        secs = time.perf_counter() - t0
        q.put(
            {
                "rss_imports": r0,
                "rss_built": r1,
                "peak_build": peak_build,
                "peak": peak_rss_bytes(),
                "reset_ok": reset_ok,
                "nbytes": nbytes,
                "pool_before": pool0,
                "pool_max": pa.default_memory_pool().max_memory(),
                "seconds": secs,
            }
        )
    except BaseException as e:
        q.put({"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})


def in_child(target, *args, timeout=1800) -> dict:
    ctx = mp_context()
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    try:
        out = q.get(timeout=timeout)
    finally:
        p.join(timeout=120)
    if "error" in out:
        raise RuntimeError(out["error"] + "\n" + out.get("tb", ""))
    return out


def memory_workload(R: Results, systems, rows: int, work: Path) -> None:
    name = f"submit memory, 1x{rows:,} rows"
    base = in_child(_mem_child, "build", str(work / "mem"), rows)
    nb = base["nbytes"]
    if nb < 100 * MB:
        R.notes.append(
            f"{name}: a {nb / MB:.0f} MB table is small next to the fixed ~50-70 MB every writer adds (Parquet "
            f"encoder buffers, Arrow thread pools; see the floor): the ratio is judged at 2,000,000 rows (full mode)"
        )
    R.extra["memory_baseline"] = base
    R.add(
        name,
        f"(table nbytes {nb / MB:.0f} MB; RSS after building it: +{(base['rss_built'] - base['rss_imports']) / MB:.0f} "
        f"MB over imports)",
        unit="MB",
        value=nb / MB,
    )
    for s in [s for s in SYSTEMS if s in systems and s not in ("protocol", "artifact_bus_batch")]:
        try:
            m = in_child(_mem_child, s, str(work / "mem"), rows)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            R.na(name, WRITERS[s].label, str(e).splitlines()[0][:160])
            continue
        finally:
            shutil.rmtree(work / "mem", ignore_errors=True)
        peak = (
            m["peak"] - m["rss_imports"]
        )  # the process's peak during the store, above its imports: table + the store's own
        extra = m["peak"] - m["rss_built"]  # what the store added on top of the table already in memory
        ratio = (nb + max(0, extra)) / nb  # the table plus what the store needed on top of it, over the table
        is_bus = s == "artifact_bus"
        R.add(
            name,
            f"{WRITERS[s].label.split(':')[0]}: peak RSS added by the store (process peak {peak / MB:.0f} MB above "
            f"imports)",
            unit="MB",
            value=extra / MB,
            ratio=ratio,
            ratio_to="(table + added) / table",
            target="≤ 1.5x table" if is_bus else None,
            met=(ratio <= 1.5) if is_bus else None,
            peak_above_imports_mb=peak / MB,
            pool_max_mb=m["pool_max"] / MB,
            seconds=m["seconds"],
            reset_ok=m["reset_ok"],
        )


def _ingest_child(root: str, what: str, q) -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # DuckDB's progress bar would flood the table
        import artifact_bus.catalog  # noqa: F401
        from artifact_bus.export import export
        from artifact_bus.ingest import ingest

        reset_peak_rss()
        r0 = rss_bytes()
        t0 = time.perf_counter()
        if what == "ingest":
            rep = ingest(root, exports=False)
            info = {"accepted": len(rep.accepted), "rejected": len(rep.rejected)}
        else:
            info = {k: v.get("status") for k, v in export(root).items()}
        q.put({"rss_imports": r0, "peak": peak_rss_bytes(), "seconds": time.perf_counter() - t0, "info": info})
    except BaseException as e:
        q.put({"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})


def ingest_mem_workload(R: Results, target_mb: int, work: Path, full_size: bool) -> None:
    from artifact_bus.submit import submit
    from artifact_bus.testing import fills_table

    d = work / "ingest-mem"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    free = shutil.disk_usage(d).free
    want = target_mb * MB
    # the source file, submit's copy of it (moved into the store by ingest) and the fills export: ~3x, plus 2 GB slack
    if free < 3 * want + 2 * 1024 * MB:
        scaled = max(64 * MB, (free - 2 * 1024 * MB) // 3)
        R.notes.append(
            f"ingest-mem: only {free / MB:.0f} MB free on {d}: artifact scaled down from {target_mb} MB to "
            f"{scaled / MB:.0f} MB"
        )
        want = scaled
    chunk = fills_table(2_000_000 if want >= 200 * MB else 500_000, 11, "big")
    src = d / "big.parquet"
    t0 = time.perf_counter()
    pq.write_table(chunk, src)  # one chunk, to learn its size on disk
    copies = max(1, math.ceil(want / src.stat().st_size))
    with pq.ParquetWriter(src, chunk.schema) as w:  # the same chunk repeated: the content does not matter here
        for _ in range(copies):
            w.write_table(chunk)
    size = src.stat().st_size
    rows = pq.ParquetFile(src).metadata.num_rows
    gen_s = time.perf_counter() - t0
    name = f"ingest memory, one {size / MB:,.0f} MB artifact"
    root = d / "bus"
    t0 = time.perf_counter()
    submit(str(src), "fills", run_id="big", producer="bench", root=root, required=True)
    sub_s = time.perf_counter() - t0
    src.unlink()
    R.add(name, f"(file: {rows:,} rows written in {gen_s:.1f} s; submit(path) seconds)", [sub_s])
    ing = in_child(_ingest_child, str(root), "ingest")
    extra = (ing["peak"] - ing["rss_imports"]) / MB
    R.add(
        name,
        f"ingest(exports=False): peak RSS above imports ({ing['seconds']:.1f} s)",
        unit="MB",
        value=extra,
        target="< 300 MB",
        met=extra < 300,
        seconds=ing["seconds"],
    )
    ex = in_child(_ingest_child, str(root), "export")
    extra2 = (ex["peak"] - ex["rss_imports"]) / MB
    R.add(
        name,
        f"its golden exports (export()): peak RSS above imports ({ex['seconds']:.1f} s)",
        unit="MB",
        value=extra2,
        note="informational: default ingest() runs these after publishing",
        seconds=ex["seconds"],
    )
    R.extra["ingest_mem"] = {
        "bytes": size,
        "rows": rows,
        "ingest": ing,
        "export": ex,
        "submit_s": sub_s,
        "full_size": full_size,
    }
    shutil.rmtree(d, ignore_errors=True)
