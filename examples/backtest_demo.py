"""The main job end to end on the embedded default: a synthetic backtest submits its results,
the single writer — the scheduled ingest notebook, run with papermill — ingests them, and the
catalog answers queries.

    python examples/backtest_demo.py [--root data/bus] [--runs 3]

Running it again is safe: every job carries an idempotency key, so a second run's jobs are
recorded as duplicates and the totals do not change.
"""
import argparse
import sys
from pathlib import Path

from artifact_bus import catalog
from artifact_bus.schedule import run_notebook
from artifact_bus.testing import submit_backtest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data/bus", help="bus root (default: data/bus)")
    p.add_argument("--runs", type=int, default=3, help="simulation runs to submit (default: 3)")
    a = p.parse_args(argv)
    # An explicit root must exist, or at least its parent folder: a missing parent usually means an
    # unmounted volume, and submit then spools instead of writing to the local disk. The demo owns
    # its folder, so it creates it.
    Path(a.root).mkdir(parents=True, exist_ok=True)

    print(f"== producers: {a.runs} simulation runs submit to {a.root}")
    for r in submit_backtest(a.root, runs=a.runs):
        print(f"   {r.job_id}  {r.status:9}  " + ", ".join(f"{x['kind']}={x['rows']}" for x in r.artifacts))

    print("== single writer: the ingest notebook, run by papermill as a schedule would")
    run = run_notebook(a.root)
    print(f"   run {run['run_no']} {run['outcome']}: {len(run['accepted'])} accepted, {len(run['rejected'])} rejected, "
          f"{len(run['duplicates'])} duplicates")
    print(f"   executed notebook: {run['notebook']}")
    if run["rejected"]:
        return 1

    with catalog(a.root) as con:
        print("== catalog summary")
        con.sql("SELECT status, count(*) AS jobs FROM catalog.jobs GROUP BY status ORDER BY status").show()
        con.sql("SELECT kind, jobs, artifacts, rows FROM catalog.kinds ORDER BY kind").show()
        con.sql("SELECT run_no, outcome, accepted, rejected, duplicates FROM catalog.ingest_runs ORDER BY run_no").show()
        print("== query: traded notional and fees per run over bus.fills")
        con.sql("""
            SELECT _run_id AS run, count(*) AS fills, count(DISTINCT symbol) AS symbols,
                   round(sum(qty * price), 2) AS notional, round(sum(fee), 2) AS fees
            FROM bus.fills GROUP BY _run_id ORDER BY _run_id""").show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
