"""The command line: `python bench/run.py` or `python -m abbench` (from bench/)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import __doc__ as DOC
from .catalog import catalog_workload
from .common import BUDGET_S, DOCTOR_MAX, GROWTH_BUDGET_S, MODES, REPO, RESULTS, SYSTEMS, WORKLOADS, tables_small
from .concurrent import concurrent_workload
from .daemon import daemon_workload
from .growth import growth_workload
from .imports import import_workload
from .machine import disk_probe, machine
from .memory import ingest_mem_workload, memory_workload
from .report import Results, table_lines
from .writes import write_workload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=DOC.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes and one repetition: under a minute")
    ap.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"workloads, comma-separated (default all: {','.join(WORKLOADS)})"
    )
    ap.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"systems, comma-separated (default all: {','.join(SYSTEMS)})"
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the results (default bench/results/latest.json)",
    )
    ap.add_argument("--reps", type=int, help="repetitions of each timed workload (quick 1, full 3)")
    ap.add_argument(
        "--catalog-artifacts", type=int, help="artifacts in the catalog workload (quick 5,000, full 100,000)"
    )
    ap.add_argument("--ingest-mem-mb", type=int, help="size of the ingest-memory artifact (quick 100, full 2048)")
    ap.add_argument(
        "--growth-sizes",
        help="store sizes of the growth workload, in artifacts, comma-separated (quick 1000,10000,100000; full "
        "adds 1000000); ratios are against the first",
    )
    ap.add_argument(
        "--workdir", type=Path, help="where the systems write (default a fresh folder under bench/results/)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args(argv)
    mode = "quick" if a.quick else "full"
    P = dict(MODES[mode])
    budget = BUDGET_S[mode]  # a system still writing after this long is stopped: its figure is a lower bound
    if a.reps:
        P["reps"] = a.reps
    if a.catalog_artifacts:
        P["catalog_artifacts"] = a.catalog_artifacts
    if a.ingest_mem_mb:
        P["ingest_mem_mb"] = a.ingest_mem_mb
    if a.growth_sizes:
        try:
            P["growth_sizes"] = tuple(sorted({int(x.replace("_", "")) for x in a.growth_sizes.split(",") if x.strip()}))
        except ValueError:
            ap.error(f"--growth-sizes takes whole numbers, comma-separated, not {a.growth_sizes!r}")
        if P["growth_sizes"][0] < 100:
            ap.error("--growth-sizes: the smallest store is 100 artifacts (the real jobs come first)")
    only = [w.strip() for w in a.only.split(",") if w.strip()]
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    for w in only:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    if "floor" not in systems:
        systems.insert(0, "floor")  # ratios need it
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=a.workdir or RESULTS))
    os.chdir(REPO)  # artifact_bus reads pyproject.toml from the working directory, as a user in this repo would
    R = Results()
    info = machine(work)
    info["disk_probe"] = disk_probe(work)
    started = time.perf_counter()
    print(
        f"artifact_bus bench ({mode}): {info['cpus']} CPUs, {info['mem_gb']} GB, Python {info['python']}, kernel "
        f"{info['kernel']}; "
        f"disk {info['disk']['device']} ({info['disk']['fstype']}) at {work}",
        flush=True,
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v), flush=True)
    dp = info["disk_probe"]
    print(
        f"disk, in the work folder (median ms): create a file {dp['create_file_ms']}, mkdir {dp['mkdir_ms']}, "
        f"rename {dp['rename_ms']}, create+write 4 KiB+fsync {dp['create_write_fsync_ms']}",
        flush=True,
    )
    timings = {}

    def step(label, fn, *args):
        t0 = time.perf_counter()
        print(f"... {label}", end="", flush=True)
        try:
            fn(*args)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            R.notes.append(f"{label} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        timings[label] = time.perf_counter() - t0
        print(f" {timings[label]:.1f} s", flush=True)

    if "small" in only:
        tables = tables_small(P["small"])
        step(
            f"small: {P['small']} x 1,000 rows",
            write_workload,
            R,
            f"small {P['small']}x1000",
            tables,
            systems,
            P["reps"],
            work,
            P["query_reps"],
            {"bus": "≤ 2x floor", "bus_ratio": 2.0},
            budget,
        )
    if "concurrent" in only:
        step(
            f"concurrent: {P['conc_procs']} procs x {P['conc_each']}",
            concurrent_workload,
            R,
            systems,
            P["reps"],
            P["conc_procs"],
            P["conc_each"],
            work,
            budget,
        )
    if "large" in only:
        from artifact_bus.testing import fills_table

        big = [fills_table(P["large_rows"], 1000 + i, f"large-{i}") for i in range(P["large_n"])]
        step(
            f"large: {P['large_n']} x {P['large_rows']:,} rows",
            write_workload,
            R,
            f"large {P['large_n']}x{P['large_rows']:,}",
            big,
            [s for s in systems if s != "artifact_bus_batch"],  # five large jobs: nothing for a batch to share
            P["reps"],
            work,
            P["query_reps"],
            {"bus": "≤ 1.1x floor", "bus_ratio": 1.1},
            budget,
        )
        del big
    if "memory" in only:
        step(f"memory: one {P['large_rows']:,}-row store", memory_workload, R, systems, P["large_rows"], work)
    if "catalog" in only:
        note = (
            ""
            if P["catalog_artifacts"] >= 100_000
            else f"N={P['catalog_artifacts']:,}, not the issue's 100,000 ({mode} mode or --catalog-artifacts)"
        )
        if note:
            R.notes.append(f"catalog: {note}")
        step(
            f"catalog: {P['catalog_artifacts']:,} artifacts",
            catalog_workload,
            R,
            P["catalog_artifacts"],
            P["catalog_query_reps"],
            work,
            note,
        )
    if "ingest-mem" in only:
        if P["ingest_mem_mb"] < 2048:
            R.notes.append(
                f"ingest-mem: {P['ingest_mem_mb']} MB artifact, not the issue's 2 GB ({mode} mode or --ingest-mem-mb)"
            )
        step(
            f"ingest memory: {P['ingest_mem_mb']} MB artifact",
            ingest_mem_workload,
            R,
            P["ingest_mem_mb"],
            work,
            P["ingest_mem_mb"] >= 2048,
        )
    if "daemon" in only:
        step(
            f"daemon latency: {P['daemon_jobs']} jobs",
            daemon_workload,
            R,
            P["daemon_jobs"],
            work,
            P["daemon_preload_rows"],
        )
    if "import" in only:
        step(f"import: {P['import_reps']} fresh processes each", import_workload, R, P["import_reps"])
    if "growth" in only:
        if P["growth_sizes"][-1] < 1_000_000:
            R.notes.append(
                f"growth: up to {P['growth_sizes'][-1]:,} artifacts, not the issue's 1,000,000 ({mode} mode or "
                f"--growth-sizes): the targets are read at the largest size"
            )
        step(
            f"growth: stores of {', '.join(f'{n:,}' for n in P['growth_sizes'])} artifacts",
            growth_workload,
            R,
            list(P["growth_sizes"]),
            P["growth_reps"],
            P["growth_open_reps"],
            work,
            GROWTH_BUDGET_S[mode],
            DOCTOR_MAX,
            (a.workdir or RESULTS) / "growth-pool",  # the seeded jobs' folders, kept between runs (same disk)
        )

    total = time.perf_counter() - started
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if max(info["loadavg_start"][0], info["loadavg_end"][0]) > 0.75 * (os.cpu_count() or 1):
        R.notes.append(
            f"the machine was busy with other work (1-minute load {info['loadavg_start'][0]} at start, "
            f"{info['loadavg_end'][0]} at end, on {os.cpu_count()} CPUs): seconds are inflated and noisy; compare "
            f"ratios"
        )
    if mode == "quick" and (P["small"] < 500 or P["conc_each"] < 100 or P["large_rows"] < 2_000_000):
        R.notes.insert(
            0,
            f"quick mode: small {P['small']}x1000, concurrent {P['conc_procs']}x{P['conc_each']}, "
            f"large {P['large_n']}x{P['large_rows']:,}, {P['reps']} repetition(s): ratios are indicative, run `make "
            f"bench` for the issue's sizes",
        )
    R.notes.append(
        "durability differs: the floor and artifact_bus fsync every data file; DuckDB and DuckLake fsync their "
        "WAL/catalog on commit; "
        "delta-rs makes no fsync call and pyiceberg fsyncs only its sqlite catalog (measured with strace -c)"
    )
    lines = table_lines(R.rows)
    print()
    print("\n".join(lines))
    for n in R.notes:
        print(f"note: {n}")
    print(f"total {total:.1f} s")
    result = {
        "bench": "artifact_bus",
        "issue": 5,
        "mode": mode,
        "params": P,
        "workloads": only,
        "systems": systems,
        "machine": info,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_seconds": total,
        "step_seconds": timings,
        "results": R.rows,
        "notes": R.notes,
        "extra": R.extra,
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = a.json.with_suffix(".md")
    v = info["versions"]
    md.write_text(
        f"Measured {result['measured_at']} ({mode} mode, {P['reps']} repetition(s), total {total:.0f} s) on "
        f"{info['cpus']} × {info['cpu_model']}, {info['mem_gb']} GB RAM, {info['disk']['fstype']} on "
        f"{info['disk']['device']}, "
        f"Linux {info['kernel']}, Python {info['python']}, load {info['loadavg_start'][0]}→{info['loadavg_end'][0]}; "
        f"in the work folder creating a file took {dp['create_file_ms']} ms, a folder {dp['mkdir_ms']} ms, a rename "
        f"{dp['rename_ms']} ms, "
        f"creating, writing and fsyncing 4 KiB {dp['create_write_fsync_ms']} ms (medians); artifact_bus "
        f"{v['artifact_bus']} (git {info['git_commit']}"
        f"{', dirty' if info['git_dirty'] else ''}), duckdb {v['duckdb']}, pyarrow {v['pyarrow']}, deltalake "
        f"{v['deltalake']}, "
        f"pyiceberg {v['pyiceberg']}, ducklake extension {v['duckdb-extension-ducklake']}.\n\n"
        + "\n".join(table_lines(R.rows, markdown=True))
        + "\n\n"
        + "".join(f"- {n}\n" for n in R.notes)
    )
    print(f"wrote {a.json} and {md}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
