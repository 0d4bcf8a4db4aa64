"""Ingest memory against the backlog: the peak RSS of one `ingest()` with N small jobs waiting in the inbox.

Memory must stay bounded by the batch size, not by the inbox: the ratio of each backlog's peak to the
smallest backlog's, measured in the same run, is the figure to watch (target: about 1x).

    python bench/ingest_backlog.py                 # 1,000 and 20,000 waiting jobs
    python bench/ingest_backlog.py --sizes 1000 5000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FILL = """
import sys
import pyarrow as pa
from artifact_bus import batch
root, n = sys.argv[1], int(sys.argv[2])
t = pa.table({"symbol": ["AAPL"] * 50, "qty": [1.0] * 50, "price": [190.0] * 50})
with batch(root=root, max_jobs=500) as b:
    for i in range(n): b.submit(t, "fills", run_id=f"r{i % 100}")
"""

INGEST = """
import json, resource, sys, time
from artifact_bus import ingest
t0 = time.perf_counter()
r = ingest(sys.argv[1], exports=False)
print(json.dumps({"accepted": len(r.accepted), "seconds": time.perf_counter() - t0,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "bus"
        subprocess.run([sys.executable, "-c", textwrap.dedent(FILL), root, str(n)], check=True)
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(INGEST), root], capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"error: ingest of {n} jobs failed:\n{p.stderr[-3000:]}")
        got = json.loads(p.stdout.strip().splitlines()[-1])
        assert got["accepted"] == n, got
        return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    args = ap.parse_args()
    base = None
    print(f"{'waiting jobs':>12}  {'ingest s':>9}  {'peak MB':>8}  {'peak / first':>12}")
    for n in args.sizes:
        t0 = time.perf_counter()
        got = measure(n)
        base = base or got["peak_mb"]
        print(
            f"{n:>12,}  {got['seconds']:>9.1f}  {got['peak_mb']:>8.0f}  {got['peak_mb'] / base:>11.2f}x"
            f"   (set-up and run {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
