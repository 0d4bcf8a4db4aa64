"""Daemon latency: submit -> queryable through `artifact-bus daemon` (bench/daemon_latency.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .common import HERE, REPO
from .report import Results


def _daemon_run(work: Path, jobs: int, *extra: str) -> dict:
    "One run of bench/daemon_latency.py; its JSON, or an 'error'."
    out = work / f"daemon_latency{'-'.join(extra)}.json"
    try:
        p = subprocess.run(
            [sys.executable, str(HERE / "daemon_latency.py"), "--jobs", str(jobs), "--out", str(out), *extra],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
            env={**os.environ, "BENCH_WORKDIR": str(work)},
        )
    except subprocess.TimeoutExpired:
        return {"error": "daemon_latency.py timed out"}
    if p.returncode != 0 or not out.exists():
        return {"error": f"daemon_latency.py exited {p.returncode}: {p.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.read_text())


def daemon_workload(R: Results, jobs: int, work: Path, preload_rows: int) -> None:
    name = "daemon submit->queryable"
    data = _daemon_run(work, jobs)
    if "error" in data:
        R.na(name, "artifact_bus daemon", data["error"])
        return
    R.extra["daemon_latency"] = data
    s = data["summary"]
    lat = data["samples_ms"]["latency"]
    p50 = s["submit -> queryable, daemon"]["p50_ms"]
    R.add(
        name,
        f"submit->queryable p50 ({jobs} jobs; p90 {s['submit -> queryable, daemon']['p90_ms']:.0f} ms)",
        lat,
        unit="ms",
        target="p50 < 500 ms",
        met=p50 < 500,
        p50_ms=p50,
    )
    R.rows[-1]["median"] = p50
    for label in ("bare submit() (baseline)", "direct ingest() of 1 job"):
        if label in s:
            R.add(name, label + " p50", unit="ms", value=s[label]["p50_ms"])
    # the same on a store whose per-kind export has real work: exports deferred (the default) and after every cycle
    n2 = min(jobs, 10)
    name2 = f"daemon submit->queryable, store of {preload_rows:,} fills rows ({n2} jobs)"
    runs = {
        "default": _daemon_run(work, n2, "--preload-rows", str(preload_rows), "--no-baseline"),
        "delay0": _daemon_run(work, n2, "--preload-rows", str(preload_rows), "--no-baseline", "--exports-delay", "0"),
    }
    R.extra["daemon_latency_preloaded"] = runs
    base = runs["delay0"].get("summary", {}).get("submit -> queryable, daemon", {}).get("p50_ms")
    for key, label in (
        ("delay0", "exports after every cycle (--exports-delay 0)"),
        ("default", "exports once the inbox is quiet (default)"),
    ):
        d = runs[key]
        if "error" in d:
            R.na(name2, label, d["error"])
            continue
        q = d["summary"]["submit -> queryable, daemon"]
        is_default = key == "default"
        R.add(
            name2,
            f"{label}: p50 (p90 {q['p90_ms']:.0f} ms)",
            d["samples_ms"]["latency"],
            unit="ms",
            ratio=(q["p50_ms"] / base) if base else None,
            ratio_to="exports after every cycle",
            target="p50 < 500 ms" if is_default else None,
            met=(q["p50_ms"] < 500) if is_default else None,
            p50_ms=q["p50_ms"],
        )
        R.rows[-1]["median"] = q["p50_ms"]
