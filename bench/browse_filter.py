"""How fast does the bus browser answer on a bus of 10,000 artifacts?

Builds a real bus (by default 1,000 jobs of 10 artifacts each, submitted with `job()` and ingested by
`ingest()`, timed), then measures, over several filter combinations:

- `query`: `list_artifacts()` on a fresh `catalog()` connection, opened and closed per call, as the
  browser does for every action;
- `widget`: the same filter set on a headless `Browser` (the time from setting the widget's value until
  its handler has queried and rendered the table, the page label and the artifact dropdown);

and the other actions: selecting an artifact (detail, first rows, plot), paging, and a full refresh.
With `--browser`, also in a real browser: Voila serves nbs/ops/browse.ipynb for the bus and Debian
chromium (playwright) measures the time from choosing a kind, typing a search or choosing an artifact
until the page shows the answer.

    .venv/bin/python bench/browse_filter.py [--jobs 1000] [--per-job 10] [--reps 9] [--root DIR] [--keep] [--browser]

Prints median and p90 in milliseconds, and writes bench/results/browse_filter.json. The target is that
filtering answers within a second; nothing is asserted. `--root` reuses a bus built before (with `--keep`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from artifact_bus.browse import browser, list_artifacts
from artifact_bus.catalog import catalog
from artifact_bus.ingest import ingest
from artifact_bus.submit import job

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE.parent / "nbs" / "ops" / "browse.ipynb"
KINDS = ["fills", "positions", "events", "features", "signals", "orders", "pnl", "risk", "quotes", "trades"]
PRODUCERS = ["SimulationArtifactWriter", "FeatureCompiler", "RiskEngine", "research-notebook"]


def artifact(kind: str, i: int, rng) -> pa.Table:
    "A small table; half the kinds carry a time column."
    n = 20
    if KINDS.index(kind) % 2 == 0:
        ts = np.datetime64("2024-01-02T14:30:00", "us") + (np.arange(n) * 60_000_000 + i).astype("timedelta64[us]")
        return pa.table(
            {"ts": pa.array(ts, pa.timestamp("us")), "value": rng.normal(0, 1, n), "qty": rng.integers(1, 100, n)}
        )
    return pa.table({"symbol": [f"SYM{j:03d}" for j in range(n)], "score": rng.normal(0, 1, n)})


def build(root: Path, jobs: int, per_job: int) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(jobs):
        with job(
            run_id=f"run-{i // 10:04d}",
            producer=PRODUCERS[i % len(PRODUCERS)],
            root=root,
            meta={"strategy": ["mean-reversion", "momentum", "carry"][i % 3], "seed": i},
        ) as j:
            for a in range(per_job):
                j.add(
                    KINDS[a % len(KINDS)],
                    artifact(KINDS[a % len(KINDS)], i, rng),
                    name=f"{KINDS[a % len(KINDS)]}_{a // len(KINDS)}",
                )
    submitted = time.perf_counter() - t0
    t1 = time.perf_counter()
    rep = ingest(root)
    ingested = time.perf_counter() - t1
    with catalog(root) as con:
        n = con.execute("SELECT count(*) FROM catalog.artifacts").fetchone()[0]
    return {
        "jobs": jobs,
        "artifacts": n,
        "accepted": len(rep.accepted),
        "submit_s": round(submitted, 2),
        "ingest_s": round(ingested, 2),
        "compacted_segments": rep.compacted,
    }


def summary(ms: list[float]) -> dict:
    s = sorted(ms)
    return {
        "median_ms": round(statistics.median(s), 1),
        "p90_ms": round(s[min(len(s) - 1, int(0.9 * len(s)))], 1),
        "max_ms": round(s[-1], 1),
    }


def timed(fn, reps: int) -> dict:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return summary(out)


FILTERS = {
    "no filter": {},
    "kind": {"kind": "fills"},
    "kind + run": {"kind": "quotes", "run": "run-0042"},
    "producer": {"producer": "RiskEngine"},
    "time range": {"since": date.today() - timedelta(days=1), "until": date.today()},
    "text (1 word)": {"text": "momentum"},
    "text (2 words) + kind": {"text": "carry run-00", "kind": "pnl"},
    "kind, sorted by rows asc": {"kind": "risk", "sort": "rows", "desc": False},
    "page 50, sorted by job_id": {"sort": "job_id", "page": 50},
    "no match": {"text": "no-such-thing"},
}


def bench(root: Path, reps: int) -> dict:
    res = {"query": {}, "widget": {}, "actions": {}}
    for name, f in FILTERS.items():

        def q(f=f):
            with catalog(root) as con:
                list_artifacts(con, **f)

        res["query"][name] = timed(q, reps)

    t = time.perf_counter()
    b = browser(root)
    res["actions"]["open the browser"] = summary([(time.perf_counter() - t) * 1000])
    widget_of = {
        "kind": b.kind,
        "run": b.run,
        "producer": b.producer,
        "since": b.since,
        "until": b.until,
        "text": b.text,
        "sort": b.sort,
        "desc": b.ascending,
    }
    clear = {
        "kind": "",
        "run": "",
        "producer": "",
        "since": None,
        "until": None,
        "text": "",
        "sort": "ingested_at",
        "desc": False,
    }
    for name, f in FILTERS.items():
        f = {
            k: (not v if k == "desc" else v) for k, v in f.items() if k in widget_of
        }  # desc=False: the ascending toggle on
        if not f or set(f) == {"sort"}:
            continue
        ms = []
        for _ in range(reps):
            for k, v in clear.items():  # back to no filter (not timed)
                widget_of[k].value = v
            t = time.perf_counter()
            for k, v in f.items():
                widget_of[k].value = v
            ms.append((time.perf_counter() - t) * 1000)
            assert b.message.value == "", b.message.value
        res["widget"][name] = summary(ms)
    for k, v in clear.items():
        widget_of[k].value = v
    b.kind.value = "fills"
    choices = [o[1] for o in b.artifact.options[1:]]
    i = iter(range(10**6))
    res["actions"]["select an artifact (detail, first rows, line plot)"] = timed(
        lambda: setattr(b.artifact, "value", choices[next(i) % len(choices)]), reps
    )
    b.kind.value = "signals"
    choices = [o[1] for o in b.artifact.options[1:]]
    res["actions"]["select an artifact (histogram)"] = timed(
        lambda: setattr(b.artifact, "value", choices[next(i) % len(choices)]), reps
    )
    b.artifact.value = ""
    b.kind.value = ""
    res["actions"]["next page"] = timed(b.next.click, reps)
    res["actions"]["sort by rows"] = timed(
        lambda: setattr(b.sort, "value", "rows" if b.sort.value != "rows" else "job_id"), reps
    )
    res["actions"]["refresh (every view)"] = timed(b.refresh_button.click, reps)
    return res


def bench_browser(root: Path, reps: int) -> dict:
    "The same actions in chromium on the Voila page: from the user's action until the page shows the answer."
    from artifact_bus.testing import chromium, local_context

    home = Path(tempfile.mkdtemp(prefix="browse-bench-voila-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACT_BUS_")}
    env.update(
        ARTIFACT_BUS_ROOT=str(root),
        JUPYTER_CONFIG_DIR=str(home / "cfg"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "rt"),
        IPYTHONDIR=str(home / "ipy"),
    )
    log = open(home / "voila.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(NOTEBOOK),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0",
        ],
        cwd=home,
        env=env,
        stdout=log,
        stderr=log,
    )
    url, res = f"http://127.0.0.1:{port}/", {}
    try:
        for _ in range(400):
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.25)
        with chromium() as br:
            ctx = local_context(br, viewport={"width": 1400, "height": 1000})  # nothing may leave this machine
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_selector(".ab-page:has-text('artifacts')", state="attached")
            res["open the page (kernel start, imports, first refresh)"] = summary([(time.perf_counter() - t) * 1000])
            page.locator(".ab-tabs .lm-TabBar-tab", has_text="Jobs and artifacts").click()

            def until_page_changes(action):
                before = page.inner_text(".ab-page")
                t = time.perf_counter()
                action()
                page.wait_for_function("b => document.querySelector('.ab-page').innerText !== b", arg=before)
                return (time.perf_counter() - t) * 1000

            kind, text, select = [], [], []
            for _ in range(reps):
                kind.append(until_page_changes(lambda: page.select_option(".ab-kind select", label="fills")))
                kind.append(until_page_changes(lambda: page.select_option(".ab-kind select", label="(all)")))
                text.append(
                    until_page_changes(
                        lambda: (page.fill(".ab-text input", "carry"), page.press(".ab-text input", "Enter"))
                    )
                )
                text.append(
                    until_page_changes(lambda: (page.fill(".ab-text input", ""), page.press(".ab-text input", "Enter")))
                )
            res["choose a kind (table shown)"] = summary(kind)
            res["search a word (table shown)"] = summary(text)
            options = page.locator(".ab-artifact select option").all_inner_texts()[1:]
            for i in range(reps):
                label = options[(i * 11) % len(options)]  # another job and another artifact name each time
                name, *_, job_id = label.replace("\xa0", " ").split(" · ")
                t = time.perf_counter()
                page.select_option(".ab-artifact select", label=label)
                page.wait_for_function(
                    "([n, j]) => { const d = document.querySelector('.ab-detail').innerText; "
                    "return d.includes(j) && d.includes(n + '.parquet') && document.querySelector('.ab-plot svg') !== "
                    "null; }",
                    arg=[name, job_id],
                )
                select.append((time.perf_counter() - t) * 1000)
            res["choose an artifact (detail, first rows, plot shown)"] = summary(select)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--per-job", type=int, default=10)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--root", type=Path, help="an existing bus to reuse, or where to build one")
    ap.add_argument("--keep", action="store_true", help="keep the bus built (prints its path)")
    ap.add_argument(
        "--browser", action="store_true", help="also measure in chromium on the Voila page (needs /usr/bin/chromium)"
    )
    args = ap.parse_args(argv)
    tmp = None
    if args.root and (args.root / "published" / "CURRENT").exists():
        root, built = args.root, {"reused": str(args.root)}
    else:
        root = args.root or Path(tempfile.mkdtemp(prefix="browse-bench-")) / "bus"
        tmp = None if (args.keep or args.root) else root.parent
        print(f"building {args.jobs} jobs x {args.per_job} artifacts in {root} ...", flush=True)
        built = build(root, args.jobs, args.per_job)
        print(
            f"  {built['artifacts']:,} artifacts: submit {built['submit_s']} s, ingest {built['ingest_s']} s "
            f"({built['compacted_segments']} segments compacted)",
            flush=True,
        )
    try:
        with catalog(root) as con:
            n = con.execute("SELECT count(*) FROM catalog.artifacts").fetchone()[0]
        res = bench(root, args.reps)
        if args.browser:
            res["browser"] = bench_browser(root, args.reps)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nbus: {n:,} artifacts; {args.reps} repetitions; times in ms (median / p90)")
    for section, title in (
        ("query", "list_artifacts() on a fresh catalog() connection"),
        ("widget", "headless Browser: set the filter widgets, table rendered"),
        ("actions", "other browser actions"),
        ("browser", "in chromium, on the Voila page: until the page shows the answer"),
    ):
        if section not in res:
            continue
        print(f"\n{title}")
        for name, s in res[section].items():
            print(f"  {name:<52} {s['median_ms']:>8.1f} {s['p90_ms']:>8.1f}")
    worst = max(
        s["p90_ms"]
        for s in list(res["query"].values())
        + list(res["widget"].values())
        + [v for k, v in res.get("browser", {}).items() if k.startswith(("choose a kind", "search"))]
    )
    print(f"\nslowest filter p90: {worst:.1f} ms (target: under 1000 ms)")
    if tmp is None:
        print(f"bus kept at {root}")
    out = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "bus": built,
        "artifacts": n,
        "reps": args.reps,
        "results": res,
        "slowest_filter_p90_ms": worst,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "browse_filter.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
