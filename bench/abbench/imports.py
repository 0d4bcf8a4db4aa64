"""Import time: what a producer pays to import artifact_bus, next to importing pyarrow.parquet (the floor:
a producer writes Parquet anyway). Each import runs in a fresh interpreter, alternating, and times itself."""

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
t0 = time.perf_counter()
{stmt}
t1 = time.perf_counter()
print(json.dumps({{"seconds": t1 - t0, "loaded": [m for m in {watch!r} if m in sys.modules]}}))
"""


def time_import(stmt: str) -> dict:
    """Seconds that `stmt` takes in a fresh interpreter (its own clock, without the interpreter's start-up).
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
    runs = {FLOOR: [], PRODUCER: [], WRITER: []}
    loaded = set()
    time_import(FLOOR)
    time_import(PRODUCER)  # warm-up: the page cache and the bytecode caches
    for _ in range(reps):
        for stmt in runs:  # alternating, so a change of load on the machine touches each alike
            out = time_import(stmt)
            runs[stmt].append(out["seconds"])
            if stmt == PRODUCER:
                loaded |= set(out["loaded"])
    floor = statistics.median(runs[FLOOR])
    ratio = statistics.median(runs[PRODUCER]) / floor
    progress(f"producer {ratio:.2f}x pyarrow.parquet")
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
