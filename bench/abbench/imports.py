"""Import time: what a producer pays to import artifact_bus, next to importing pyarrow.parquet (the floor:
a producer writes Parquet anyway). Each import runs in a fresh interpreter, alternating, and times itself: wall
clock (the target's figure) and CPU time (what the import itself costs, which a busy machine inflates far less)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from .common import progress
from .report import Results

FLOOR = "import pyarrow.parquet"
PRODUCER = "from artifact_bus import submit, job, batch"
WRITER = "from artifact_bus import ingest, catalog"
TARGET = 1.2  # the producer's import, at most this many times the floor's
# what the producer's import must leave out (the writer side and duckdb), checked in the same processes
WRITER_SIDE = [
    "duckdb",
    *(
        f"artifact_bus.{m}"
        for m in ("ingest", "catalog", "export", "quarantine", "compact", "lake", "schedule", "health", "browse")
    ),
]

_PROBE = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
{stmt}
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({{"seconds": t1 - t0, "cpu": c1 - c0, "loaded": [m for m in {watch!r} if m in sys.modules]}}))
"""


def time_import(stmt: str) -> dict:
    """Seconds that `stmt` takes in a fresh interpreter (its own clock, without the interpreter's start-up), and
    its CPU seconds.
    Bytecode caches are written and used, as by any installed package (pip compiles them at install time),
    even where the environment turns them off (PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACT_BUS_") and k != "PYTHONDONTWRITEBYTECODE"}
    p = subprocess.run(
        [sys.executable, "-c", _PROBE.format(stmt=stmt, watch=WRITER_SIDE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return json.loads(p.stdout.splitlines()[-1])


def import_workload(R: Results, reps: int) -> None:
    name = "import, fresh process"
    runs: dict[str, list] = {FLOOR: [], PRODUCER: [], WRITER: []}
    cpu: dict[str, list] = {FLOOR: [], PRODUCER: [], WRITER: []}
    loaded = set()
    time_import(FLOOR)
    time_import(PRODUCER)  # warm-up: the page cache and the bytecode caches
    for _ in range(reps):
        for stmt in runs:  # alternating, so a change of load on the machine touches each alike
            out = time_import(stmt)
            runs[stmt].append(out["seconds"])
            cpu[stmt].append(out["cpu"])
            if stmt == PRODUCER:
                loaded |= set(out["loaded"])
    floor = statistics.median(runs[FLOOR])
    ratio = statistics.median(runs[PRODUCER]) / floor
    cpu_ratio = statistics.median(cpu[PRODUCER]) / statistics.median(cpu[FLOOR])
    progress(f"producer {ratio:.2f}x pyarrow.parquet (CPU time {cpu_ratio:.2f}x)")
    R.add(name, f"floor: {FLOOR}", runs[FLOOR], ratio=1.0, ratio_to="pyarrow.parquet")
    R.add(
        name,
        f"artifact_bus producer: {PRODUCER}",
        runs[PRODUCER],
        ratio=ratio,
        ratio_to="pyarrow.parquet",
        target=f"≤ {TARGET}x pyarrow.parquet",
        met=ratio <= TARGET and not loaded,
        loaded_writer_side=sorted(loaded),
        cpu_ratio=cpu_ratio,
        note=f"CPU time {cpu_ratio:.2f}x",
    )
    R.add(
        name,
        f"writer and readers: {WRITER}",
        runs[WRITER],
        ratio=statistics.median(runs[WRITER]) / floor,
        ratio_to="pyarrow.parquet",
        note="informational",
    )
    if loaded:
        R.notes.append(f"{name}: `{PRODUCER}` loaded {', '.join(sorted(loaded))}")
