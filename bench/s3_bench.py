#!/usr/bin/env python
"""What scale-out costs: the small and large workloads submitted to an s3:// root, pulled, ingested and
mirrored into a DuckLake on PostgreSQL — next to the floor, pyarrow `write_table` straight to S3.

    python bench/s3_bench.py [--quick] [--small N] [--large-n N] [--large-rows N] [--latency-reps N] [--json PATH]

Starts its own SeaweedFS (`weed mini`) and PostgreSQL on free ports of 127.0.0.1 (tests/servers.py) and
stops them by PID at the end. Everything runs on this machine, so the network is loopback: the figures
are the protocol's own cost (requests, fsyncs, copies), not a WAN's latency.

Systems and phases, per workload:
- floor: `pyarrow.parquet.write_table(t, "bucket/…", filesystem=S3FileSystem)` per artifact;
- ducklake direct: each artifact `INSERT`ed into the DuckLake by the producer itself (one snapshot each —
  the multi-writer setup artifact_bus avoids);
- artifact_bus: `submit()` to the s3:// root (commit in the local staging inbox, upload, COMMIT last);
  the writer's `pull()`; `ingest()` (validate, move, catalog, publish: queryable on the writer's machine);
  `mirror()` (lake files + one DuckLake transaction per batch: queryable from any machine).
Also: one job's latency from submit to queryable in the lake, opening a lake reader, and the GROUP BY
over the lake (data on S3) vs over the writer's `bus.fills` views (local files).

Prints a table and writes the figures as JSON (default bench/results/s3_latest.json). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test servers
from abbench.systems import _Phases  # noqa: E402  (the main harness's timing of ingest()'s phases, from the outside)
from servers import SKIP, PostgreSQL, SeaweedFS  # noqa: E402

from artifact_bus import catalog, ingest, lake, objstore, submit  # noqa: E402
from artifact_bus.core import load_config  # noqa: E402
from artifact_bus.testing import fills_table  # noqa: E402

GROUP_BY = "SELECT symbol, sum(qty * price) AS notional FROM {src} GROUP BY symbol"
MB = 1 << 20


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t0, out


def submit_remote(t: pa.Table, url: str) -> str:
    "submit() to an s3:// root: committed locally, then uploaded."
    return submit(t, "fills", root=url, run_id=t["run_id"][0].as_py()).job_id


class _RemotePhases(_Phases):
    "ingest() pulls from object storage first and mirrors each batch into the lake: time those two phases."

    NAMES = ("_pull", "_mirror")


def timed_ingest(cfg) -> dict:
    "ingest() of what waits on object storage: total seconds, and its pull and mirror phases."
    with _RemotePhases() as ph:
        t, rep = timed(ingest, config=cfg, exports=False)
    phase = lambda n: sum(c[2] - c[1] for c in ph.calls if c[0] == n)
    pull, mirror = phase("_pull"), phase("_mirror")
    return {"rep": rep, "pull": pull, "mirror": mirror, "ingest": t - pull - mirror}


class Bench:
    def __init__(self, work: Path, s3: SeaweedFS, pg: PostgreSQL):
        self.work, self.s3, self.pg, self.rows = work, s3, pg, []

    def bus(self, name: str):
        "A fresh writer root with its own prefix and DuckLake database; returns (writer config, producer config)."
        root = self.work / name
        root.mkdir()
        url = f"s3://{self.s3.bucket}/{name}"
        (root / "bus.toml").write_text(
            f'remote = "{url}"\nducklake = "{self.pg.createdb(name)}"\nbatch_size = 500\ncompact_min_files = 0\n'
        )
        producer = load_config(url)
        producer.root.mkdir(parents=True, exist_ok=True)
        return load_config(root), producer

    def add(self, workload, system, seconds, floor=None, rows=None, nbytes=None, note=""):
        self.rows.append(
            {
                "workload": workload,
                "system": system,
                "seconds": seconds,
                "ratio": seconds / floor if floor else None,
                "rows_per_s": rows / seconds if rows and seconds else None,
                "mb_per_s": nbytes / MB / seconds if nbytes and seconds else None,
                "note": note,
            }
        )

    def floor(self, name: str, tables) -> float:
        fs = objstore.s3fs(load_config(self.work, remote=f"s3://{self.s3.bucket}/{name}"))
        t0 = time.perf_counter()
        for i, t in enumerate(tables):
            pq.write_table(t, f"{self.s3.bucket}/{name}/{i:06d}.parquet", filesystem=fs)
        return time.perf_counter() - t0

    def ducklake_direct(self, name: str, tables) -> float:
        cfg, _ = self.bus(name)
        with lake.lake_connection(cfg) as con:
            con.register("__t", tables[0])
            con.execute("CREATE TABLE lake.fills AS SELECT * FROM __t LIMIT 0")
            con.unregister("__t")
            t0 = time.perf_counter()
            for t in tables:
                con.register("__t", t)
                con.execute("INSERT INTO lake.fills SELECT * FROM __t")
                con.unregister("__t")
            return time.perf_counter() - t0

    def artifact_bus(self, name: str, tables) -> dict:
        cfg, _ = self.bus(name)
        lake._writer_lake(cfg)  # the lake exists and the writer's connection to it is open, as in a running daemon
        t_submit, _ = timed(lambda: [submit_remote(t, cfg.remote) for t in tables])
        r = timed_ingest(cfg)
        rep = r.pop("rep")
        assert len(rep.pulled) == len(rep.accepted) == len(tables) and rep.lake_snapshots, (
            len(rep.pulled),
            len(rep.accepted),
        )
        return {"cfg": cfg, "submit": t_submit, **r}

    def workload(self, label: str, tables) -> None:
        rows, nbytes = sum(t.num_rows for t in tables), sum(t.nbytes for t in tables)
        print(f"... {label}", flush=True)
        slug = label.split()[0]
        f = self.floor(f"floor_{slug}", tables)
        self.add(label, "floor: pyarrow write_table to S3", f, f, rows, nbytes)
        d = self.ducklake_direct(f"direct_{slug}", tables)
        self.add(label, "ducklake direct: INSERT per artifact", d, f, rows, nbytes, "one snapshot per artifact")
        ab = self.artifact_bus(f"bus_{slug}", tables)
        self.add(label, "artifact_bus: submit (commit locally + upload)", ab["submit"], f, rows, nbytes)
        self.add(label, "artifact_bus: writer pull", ab["pull"], f, rows, nbytes)
        self.add(label, "artifact_bus: ingest (validate, catalog, publish)", ab["ingest"], f, rows, nbytes)
        self.add(
            label, "artifact_bus: mirror into the DuckLake", ab["mirror"], f, rows, nbytes, "one snapshot per batch"
        )
        q = ab["submit"] + ab["pull"] + ab["ingest"]
        self.add(label, "artifact_bus: submit -> queryable on the writer", q, f, rows, nbytes)
        self.add(label, "artifact_bus: submit -> queryable in the lake", q + ab["mirror"], f, rows, nbytes)
        self.queries(label, ab["cfg"])

    def queries(self, label: str, cfg, reps: int = 5) -> None:
        t_open, lk = timed(lake.lake_reader, config=cfg)
        with lk, catalog(cfg.root) as c:

            def best(con, src):
                con.sql(GROUP_BY.format(src=src)).fetchall()  # warm-up
                return statistics.median(
                    timed(lambda: con.sql(GROUP_BY.format(src=src)).fetchall())[0] for _ in range(reps)
                )

            self.add(label, "reader: lake_reader() (attach READ_ONLY)", t_open)
            self.add(label, "query: GROUP BY over the lake (S3 data)", best(lk, "fills"))
            self.add(label, "query: GROUP BY over bus.fills (writer's local files)", best(c, "bus.fills"))

    def latency(self, reps: int) -> None:
        "One job at a time: submit -> pull -> ingest -> mirror, the writer's connections open as in a daemon."
        print("... latency", flush=True)
        cfg, _ = self.bus("latency")
        lake.lake_connection(cfg).close()
        phases = {k: [] for k in ("submit", "pull", "ingest", "mirror", "total")}
        for i in range(reps + 1):
            t = fills_table(1000, 50_000 + i, f"lat-{i}")
            t_submit, _ = timed(submit_remote, t, cfg.remote)
            r = timed_ingest(cfg)
            if i == 0:
                continue  # the first one also opens the writer's lake connection
            total = t_submit + r["pull"] + r["ingest"] + r["mirror"]
            for k, v in zip(phases, (t_submit, r["pull"], r["ingest"], r["mirror"], total)):
                phases[k].append(v)
        for k, v in phases.items():
            self.add(
                "one job of 1,000 rows",
                f"latency: {k}" + (" (submit -> queryable in the lake)" if k == "total" else ""),
                statistics.median(v),
                note=f"median of {reps}",
            )


def table(rows) -> str:
    out = [
        f"{'workload':<24} {'system / phase':<56} {'seconds':>9} {'vs floor':>9} {'rows/s':>11} {'MB/s':>7}  note",
        "-" * 130,
    ]
    for r in rows:
        fmt = lambda v, f: format(v, f) if v is not None else "-"
        out.append(
            f"{r['workload']:<24} {r['system']:<56} {r['seconds']:>9.3f} "
            f"{fmt(r['ratio'], '>8.2f') + ('x' if r['ratio'] else ''):>9} "
            f"{fmt(r['rows_per_s'], '>11,.0f'):>11} {fmt(r['mb_per_s'], '>7.1f'):>7}  {r['note']}"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--small", type=int, help="artifacts of 1,000 rows in the small workload (default 500; quick 50)")
    ap.add_argument("--large-n", type=int, help="artifacts in the large workload (default 5)")
    ap.add_argument("--large-rows", type=int, help="rows per large artifact (default 2,000,000; quick 200,000)")
    ap.add_argument("--latency-reps", type=int, default=5)
    ap.add_argument("--json", type=Path, default=HERE / "results" / "s3_latest.json")
    a = ap.parse_args(argv)
    if SKIP:
        sys.exit(f"error: {SKIP}")
    small = a.small or (50 if a.quick else 500)
    large_n, large_rows = a.large_n or 5, a.large_rows or (200_000 if a.quick else 2_000_000)
    work = Path(tempfile.mkdtemp(prefix="artifact-bus-s3-bench-"))
    os.environ["ARTIFACT_BUS_SPOOL"] = str(work / "spool")
    for k in [k for k in os.environ if k.startswith("ARTIFACT_BUS_") and k != "ARTIFACT_BUS_SPOOL"]:
        del os.environ[k]
    s3 = pg = None
    try:
        s3 = SeaweedFS(work / "seaweedfs").start()
        pg = PostgreSQL().start()
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
            os.environ.pop(k, None)
        os.environ.update(s3.env)
        b = Bench(work, s3, pg)
        b.workload(f"small {small}x1,000", [fills_table(1000, i, f"run-{i:06d}") for i in range(small)])
        b.workload(
            f"large {large_n}x{large_rows:,}", [fills_table(large_rows, 1000 + i, f"large-{i}") for i in range(large_n)]
        )
        b.latency(a.latency_reps)
    finally:
        lake._forget()
        if s3:
            s3.stop()
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(b.rows))
    machine = (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}"
    )
    print(f"\n{machine}; SeaweedFS and PostgreSQL on 127.0.0.1 (loopback); load average {os.getloadavg()[0]:.1f}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(
        json.dumps({"machine": machine, "small": small, "large": [large_n, large_rows], "rows": b.rows}, indent=1)
    )


if __name__ == "__main__":
    main()
