"""What works without the optional dependencies: numpy (the `browse` extra) and watchdog (the `daemon` extra).

Contract: a producer, the writer (`ingest()`, `export()`, `artifact-bus ingest`) and the readers (`catalog()`)
need neither numpy nor watchdog. Without watchdog `artifact-bus daemon` says so in one log line and polls
the inbox, and still ingests what arrives. Each check runs in a fresh interpreter where importing the
package is made to fail (`sys.modules[name] = None`), as it fails where the package is not installed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
from helpers import HANG_GUARD, clean_env

from artifact_bus import NotFound, catalog, submit


def test_submit_ingest_export_and_read_without_numpy(tmp_path):
    root = tmp_path / "bus"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["numpy"] = None          # as if numpy were not installed
        import pyarrow as pa
        from artifact_bus import submit, job, ingest, catalog, export
        from artifact_bus.cli import main
        root = {str(root)!r}
        submit(pa.table({{"x": [1, 2, 3]}}), "points", run_id="r1", root=root)
        with job(run_id="r2", root=root) as j:
            j.add("points", pa.table({{"x": [4]}}))
        assert main(["ingest", "--root", root]) == 0
        assert export(root)["points"]["status"] == "ok"
        with catalog(root) as con:
            print(con.execute("SELECT sum(x) FROM bus.points").fetchone()[0])
        assert sys.modules["numpy"] is None  # nothing got numpy in by another way
    """)
    p = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD, cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "10", p.stdout


def _published_sum(root):
    try:
        with catalog(root) as con:
            return con.execute("SELECT sum(x) FROM bus.points").fetchone()[0]
    except NotFound:
        return None
    except Exception as e:  # the view appears with the first points job
        if "points" in str(e):
            return None
        raise


def test_daemon_polls_without_watchdog(tmp_path):
    root = tmp_path / "bus"
    root.mkdir()
    log = tmp_path / "daemon.log"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["watchdog"] = None       # as if watchdog were not installed
        from artifact_bus.schedule import daemon
        daemon({str(root)!r}, interval=0.3)
    """)
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env=clean_env(), stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path
        )
    try:
        end = time.monotonic() + HANG_GUARD
        while "daemon started" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert text.count("watchdog is not installed: the daemon polls the inbox every 0.3s") == 1, text
        assert "polling every 0.3s" in text, text
        submit(pa.table({"x": [5, 6]}), "points", run_id="polled", root=root)
        while _published_sum(root) != 11:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < end, f"the daemon did not ingest the job\n{log.read_text()}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=HANG_GUARD)
