"""The catalog on N artifacts: listing and filter queries, and opening catalog()."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .report import Results
from .systems import bus_ingest
from .writes import time_query


def write_jobs_fast(root: Path, n_artifacts: int, per_job: int = 10) -> dict:
    """Write `n_artifacts` tiny artifacts as committed jobs straight into the inbox, following job protocol v1
    (manifest.json, Parquet files, COMMIT, rename into inbox/) — the way a producer in another language would —
    but without fsync: this is set-up, not a measured write. 5 kinds, `per_job` artifacts per job,
    submitted_at spread over 100 days."""
    import io
    from datetime import datetime, timedelta, timezone

    from artifact_bus.core import new_job_id
    from artifact_bus.protocol import checksum_bytes, lineage, schema_to_json

    kinds = ["fills", "positions", "events", "features", "signals"]
    t = pa.table({"symbol": ["SYM000"], "qty": [1.0]})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    data = buf.getvalue()
    ck, schema = checksum_bytes(data), schema_to_json(t.schema)
    lin = lineage()
    inbox, tmp = root / "inbox", root / "inbox" / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    n_jobs = math.ceil(n_artifacts / per_job)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    made = 0
    for j in range(n_jobs):
        jid = new_job_id()
        d = tmp / jid
        d.mkdir()
        arts = []
        for a in range(min(per_job, n_artifacts - made)):
            kind = kinds[a % len(kinds)]
            name = f"{kind}-{a // len(kinds) + 1}"
            (d / f"{name}.parquet").write_bytes(data)
            arts.append(
                {
                    "name": name,
                    "kind": kind,
                    "file": f"{name}.parquet",
                    "rows": 1,
                    "bytes": len(data),
                    "checksum": ck,
                    "schema": schema,
                }
            )
        made += len(arts)
        sub = start + timedelta(days=100 * j / n_jobs)
        m = {
            "protocol": 1,
            "job_id": jid,
            "run_id": f"run-{j:06d}",
            "producer": "bench-catalog",
            "submitted_at": sub.isoformat(),
            "key": None,
            "meta": {"j": j},
            "lineage": lin,
            "artifacts": arts,
        }
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
    R.extra["catalog_build"] = {
        **info,
        "write_s": t_write,
        "ingest": ing,
        "note": note,
        "config": {"batch_size": info["jobs"], "compact_min_files": 0},
    }
    R.add(
        name,
        f"(set-up: {info['jobs']:,} jobs written in {t_write:.0f} s; one ingest(), batch_size={info['jobs']}, "
        f"no compaction: seconds)",
        [ing["seconds"]],
    )
    if ing["accepted"] != info["jobs"]:
        R.notes.append(f"{name}: ingest accepted {ing['accepted']} of {info['jobs']} jobs")
    opens = []
    for _ in range(reps):
        t0 = time.perf_counter()
        c = catalog(root)
        c.execute("SELECT 1").fetchall()
        opens.append(time.perf_counter() - t0)
        c.close()
    con = catalog(root)
    mid_run = f"run-{info['jobs'] // 2:06d}"
    queries = {
        "listing: ORDER BY ingested_at DESC LIMIT 50": (
            "SELECT * FROM catalog.artifacts ORDER BY ingested_at DESC LIMIT 50",
            [],
        ),
        "filter: WHERE run_id = ?": ("SELECT * FROM catalog.artifacts WHERE run_id = ?", [mid_run]),
        "filter: WHERE kind = ? AND submitted_at > ?": (
            "SELECT * FROM catalog.artifacts WHERE kind = ? AND submitted_at > ?::TIMESTAMPTZ",
            ["fills", info["last_day"]],
        ),
        "count(*) GROUP BY kind": ("SELECT kind, count(*) FROM catalog.artifacts GROUP BY kind", []),
    }
    total = con.execute("SELECT count(*) FROM catalog.artifacts").fetchone()[0]
    if total != n:
        R.notes.append(f"{name}: catalog holds {total} artifacts, expected {n}")
    for label, (sql, params) in queries.items():
        ts = time_query(lambda: con.execute(sql, params).fetchall(), reps)
        ms = [x * 1000 for x in ts]
        med = statistics.median(ms)
        R.add(name, label, ms, unit="ms", target="< 50 ms", met=med < 50, rows=len(con.execute(sql, params).fetchall()))
    con.close()
    R.add(name, "catalog() open + SELECT 1", [x * 1000 for x in opens], unit="ms", note="informational")
    shutil.rmtree(root.parent, ignore_errors=True)
