"""How long after submit() is a job queryable when `artifact-bus daemon` runs?

Starts `daemon()` as a subprocess on a temporary bus, submits N small jobs one at a time and measures,
for each, the time from the start of submit() until `catalog(root)` shows the job. As baselines measured
in the same run, on a second temporary bus: the time of a bare submit(), and of a direct ingest() call
over one waiting job (what a cron-driven ingest costs per run, without the wait for the schedule).

    .venv/bin/python bench/daemon_latency.py [--jobs 30] [--interval 2.0] [--papermill]
                                             [--preload-rows N] [--exports-delay S] [--no-baseline]

With `--preload-rows N` the bus already holds N fills rows before the daemon starts, so the per-kind
golden export of fills has real work to do: that shows what the exports cost the jobs that arrive while
they run (compare the default `--exports-delay` with `--exports-delay 0`, which exports after every cycle).

Prints a table and writes bench/results/daemon_latency.json. The target is p50 < 500 ms; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from artifact_bus.catalog import catalog
from artifact_bus.core import NotFound
from artifact_bus.ingest import ingest
from artifact_bus.submit import submit

HERE = Path(__file__).resolve().parent
TABLE = pa.table({"symbol": ["AAPL", "MSFT", "AAPL"], "qty": [10.0, -5.0, 2.0], "price": [190.0, 410.0, 191.0]})
DEADLINE = 120.0  # seconds to wait for one job before giving up


def pct(values, q):
    "Nearest-rank percentile of `values` (q in 0..100)."
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values) -> dict:
    return {
        "n": len(values),
        "p50_ms": pct(values, 50),
        "p90_ms": pct(values, 90),
        "max_ms": max(values) if values else None,
        "mean_ms": sum(values) / len(values) if values else None,
    }


def queryable(root, job_id) -> bool:
    try:
        con = catalog(root)
    except NotFound:
        return False
    with con:
        return con.execute("SELECT count(*) FROM catalog.jobs WHERE job_id = ?", [job_id]).fetchone()[0] == 1


def start_daemon(
    root: Path, interval: float, papermill: bool, log_path: Path, exports_delay=None
) -> tuple[subprocess.Popen, str]:
    extra = "" if exports_delay is None else f", exports_delay={exports_delay}"
    code = (
        "from artifact_bus.schedule import daemon; "
        f"daemon({str(root)!r}, interval={interval}, papermill={papermill}{extra})"
    )
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        text = log_path.read_text()
        if "daemon started" in text:
            return proc, text.split("daemon started", 1)[1].splitlines()[0].strip()
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited {proc.returncode}:\n{text}")
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("the daemon did not start")


def preload(root: Path, rows: int) -> None:
    """Store `rows` fills rows (in jobs of up to 1,000,000) and ingest them with their exports: the store the daemon
    starts on."""
    from artifact_bus.testing import fills_table

    for i, start in enumerate(range(0, rows, 1_000_000)):
        submit(
            fills_table(min(1_000_000, rows - start), seed=500 + i, run_id=f"preload-{i}"),
            "fills",
            producer="bench",
            root=root,
        )
    ingest(root)


def bench_daemon(root: Path, n: int, interval: float, papermill: bool, workdir: Path, exports_delay=None) -> dict:
    proc, how = start_daemon(root, interval, papermill, workdir / "daemon.log", exports_delay)
    lat, sub = [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            r = submit(TABLE, "fills", run_id=f"lat-{i}", producer="bench", root=root)
            t1 = time.perf_counter()
            end = time.monotonic() + DEADLINE
            while not queryable(root, r.job_id):
                if time.monotonic() > end:
                    raise SystemExit(
                        f"job {r.job_id} not queryable after {DEADLINE}s; daemon "
                        f"log:\n{(workdir / 'daemon.log').read_text()}"
                    )
                time.sleep(0.002)
            t2 = time.perf_counter()
            sub.append((t1 - t0) * 1000)
            lat.append((t2 - t0) * 1000)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=DEADLINE)
    return {"latency": lat, "submit": sub, "daemon": how, "daemon_exit": rc}


def bench_baseline(root: Path, n: int) -> dict:
    sub, ing = [], []
    ingest(root)  # create the catalog first, as the daemon's bus had it after its first cycle
    for i in range(n):
        t0 = time.perf_counter()
        submit(TABLE, "fills", run_id=f"base-{i}", producer="bench", root=root)
        t1 = time.perf_counter()
        rep = ingest(root)
        t2 = time.perf_counter()
        assert len(rep.accepted) == 1
        sub.append((t1 - t0) * 1000)
        ing.append((t2 - t1) * 1000)
    return {"submit": sub, "ingest": ing}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30, help="jobs to submit (default 30)")
    ap.add_argument(
        "--interval", type=float, default=2.0, help="the daemon's polling interval (default 2.0, its default)"
    )
    ap.add_argument("--papermill", action="store_true", help="run the daemon in papermill mode")
    ap.add_argument(
        "--preload-rows", type=int, default=0, help="fills rows the bus holds before the daemon starts (default 0)"
    )
    ap.add_argument("--exports-delay", type=float, help="the daemon's exports_delay (default: the daemon's default)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baselines (bare submit, direct ingest)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "daemon_latency.json")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-daemon-", dir=os.environ.get("BENCH_WORKDIR")) as d:
        d = Path(d)
        if a.preload_rows:
            preload(d / "bus", a.preload_rows)
        daemon_run = bench_daemon(d / "bus", a.jobs, a.interval, a.papermill, d, a.exports_delay)
        base = None if a.no_baseline else bench_baseline(d / "baseline", a.jobs)

    rows = {
        "submit -> queryable, daemon": summary(daemon_run["latency"]),
        "bare submit() (daemon running)": summary(daemon_run["submit"]),
    }
    if base:
        rows |= {
            "bare submit() (baseline)": summary(base["submit"]),
            "direct ingest() of 1 job": summary(base["ingest"]),
        }
    width = max(map(len, rows))
    print(f"daemon: {daemon_run['daemon']}; exit code after SIGTERM: {daemon_run['daemon_exit']}")
    print(f"{'':{width}}  {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
    for name, s in rows.items():
        print(f"{name:{width}}  {s['p50_ms']:8.1f} {s['p90_ms']:8.1f} {s['max_ms']:8.1f}")
    p50 = rows["submit -> queryable, daemon"]["p50_ms"]
    print(f"target p50 < 500 ms: {'met' if p50 < 500 else 'NOT met'} ({p50:.0f} ms)")

    result = {
        "bench": "daemon_latency",
        "jobs": a.jobs,
        "interval_s": a.interval,
        "papermill": a.papermill,
        "preload_rows": a.preload_rows,
        "exports_delay": a.exports_delay,
        "daemon": daemon_run["daemon"],
        "daemon_exit_code": daemon_run["daemon_exit"],
        "summary": rows,
        "samples_ms": {
            "latency": daemon_run["latency"],
            "daemon_submit": daemon_run["submit"],
            **({"baseline_submit": base["submit"], "baseline_ingest": base["ingest"]} if base else {}),
        },
        "target": {"p50_ms_below": 500, "met": p50 < 500},
        "env": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "pyarrow": pa.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
