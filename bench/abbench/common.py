"""What every part of the bench shares: paths, the workload and system names, the sizes of each mode,
units, memory probes, the worker processes' start method and the seeded data."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
from importlib import metadata
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent.parent  # bench/
REPO = HERE.parent
RESULTS = HERE / "results"

WORKLOADS = ("small", "concurrent", "large", "memory", "catalog", "ingest-mem", "daemon", "import", "growth")
SYSTEMS = ("floor", "protocol", "duckdb", "delta", "iceberg", "ducklake", "artifact_bus", "artifact_bus_batch")
BUS_SYSTEMS = ("artifact_bus", "artifact_bus_batch")
BUS_LABEL = {"artifact_bus": "artifact_bus", "artifact_bus_batch": "artifact_bus batch()"}

MODES = {
    "quick": dict(
        reps=1,
        small=50,
        conc_procs=4,
        conc_each=10,
        large_n=5,
        large_rows=200_000,
        catalog_artifacts=5_000,
        ingest_mem_mb=100,
        query_reps=5,
        catalog_query_reps=20,
        daemon_jobs=6,
        daemon_preload_rows=300_000,
        import_reps=7,
        growth_sizes=(1_000, 10_000, 100_000),
        growth_reps=3,
        growth_open_reps=10,
    ),
    "full": dict(
        reps=3,
        small=500,
        conc_procs=4,
        conc_each=100,
        large_n=5,
        large_rows=2_000_000,
        catalog_artifacts=100_000,
        ingest_mem_mb=2048,
        query_reps=5,
        catalog_query_reps=20,
        daemon_jobs=20,
        daemon_preload_rows=3_000_000,
        import_reps=21,
        growth_sizes=(1_000, 10_000, 100_000, 1_000_000),
        growth_reps=3,
        growth_open_reps=10,
    ),
}
SLOW_S = 10.0  # a system whose first repetition of a workload took longer is not repeated (noted in the output)
BUDGET_S = {
    "quick": 8.0,
    "full": 30.0,
}  # a system still writing after this long is stopped: its figure is a lower bound
GROWTH_BUDGET_S = {"quick": 30.0, "full": 120.0}  # growth: once a size's measured ingests took this long, no more
DOCTOR_MAX = 1_000_000  # growth: `doctor` checks the seeded store up to this many artifacts (it stats every file)
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
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB


def reset_peak_rss() -> bool:
    "Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_CTX = None


def mp_context():
    """Worker processes come from a fork server started once, early, with the libraries imported: a worker
    starts in milliseconds, not the second a spawn takes, and never inherits the harness's memory or threads."""
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(
            [
                "abbench.concurrent",
                "abbench.memory",
                "numpy",
                "pyarrow",
                "pyarrow.parquet",
                "duckdb",
                "artifact_bus.submit",
                "artifact_bus.ingest",
                "artifact_bus.testing",
                "deltalake",
                "pyiceberg.catalog.sql",
            ]
        )
    return _CTX


def tables_small(n: int, seed0: int = 0) -> list[pa.Table]:
    from artifact_bus.testing import fills_table

    return [fills_table(1000, seed0 + i, f"run-{seed0 + i:06d}") for i in range(n)]


def total_rows(tables) -> int:
    return sum(t.num_rows for t in tables)


def progress(msg: str) -> None:
    "A short progress mark on the current '... workload' line."
    print(f" [{msg}]", end="", flush=True)
