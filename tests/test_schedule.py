"""Scheduled ingest, end to end with real processes: papermill runs of the ingest notebook (through
`run_notebook` and through the `papermill` command), their catalog rows and kept notebooks, failed runs,
retention, and `daemon()` as a subprocess (file-event wake-up, SIGTERM, the singleton lock, WriterBusy,
papermill mode). No mocks; every wait is a deadline on an observable state, never a timing assertion.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import HANG_GUARD, clean_env

from artifact_bus.catalog import catalog
from artifact_bus.catalog_db import lock_holder
from artifact_bus.core import load_config
from artifact_bus.ingest import INTENT, ingest
from artifact_bus.schedule import RUN_NAME, RunFailed, daemon_lock, ingest_notebook, run_notebook
from artifact_bus.submit import submit

REPO = Path(__file__).resolve().parents[1]
OPS_NOTEBOOK = REPO / "nbs" / "ops" / "ingest.ipynb"
DEADLINE = 60  # seconds to wait for a state to appear; a guard against hangs, never an assertion on speed

FILLS = pa.table({"symbol": ["AAPL", "MSFT", "AAPL"], "qty": [10.0, -5.0, 2.0], "price": [190.0, 410.0, 191.0]})


def wait_until(pred, what: str, deadline: float = DEADLINE):
    "Poll `pred` until it returns something truthy; fail naming `what` after `deadline` seconds."
    end = time.monotonic() + deadline
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.05)


def rows(root, sql, *params):
    "Rows of `sql` on the latest published snapshot of `root` ([] before the first publish)."
    try:
        con = catalog(root)
    except Exception:
        return []
    with con:
        return con.execute(sql, list(params)).fetchall()


def job_count(root, job_id) -> int:
    got = rows(root, "SELECT count(*) FROM catalog.jobs WHERE job_id = ?", job_id)
    return got[0][0] if got else 0


def runs_for(root, notebook):
    return rows(
        root,
        "SELECT outcome, accepted, rejected, duplicates, notebook, error, pid FROM catalog.ingest_runs "
        "WHERE notebook = ? ORDER BY run_no",
        str(notebook),
    )


def run_notebooks(root) -> list[str]:
    d = Path(root) / "runs"
    return sorted(p.name for p in d.iterdir() if RUN_NAME.match(p.name)) if d.is_dir() else []


def error_outputs(notebook) -> list[str]:
    "The `ename`s of the error outputs in an executed notebook."
    nb = json.loads(Path(notebook).read_text())
    return [o["ename"] for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]


def corrupt(receipt):
    (receipt.path / "fills.parquet").write_bytes(b"not parquet")


# --- papermill runs ------------------------------------------------------------------------------------


def test_ingest_notebook_has_one_parameters_cell_of_literals():
    nb = json.loads(OPS_NOTEBOOK.read_text())
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, "nbs/ops/ingest.ipynb must have exactly one cell tagged 'parameters'"
    body = ast.parse("".join(params[0]["source"])).body
    assert all(isinstance(n, ast.Assign) for n in body)
    assert {n.targets[0].id: ast.literal_eval(n.value) for n in body} == {
        "root": None,
        "max_jobs": None,
        "exports": True,
        "run_notebook": None,
    }
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)  # no output committed


def test_run_notebook_records_its_run_and_keeps_the_notebook(root):
    good = [submit(FILLS, "fills", run_id=f"sim-{i}", root=root) for i in range(2)]
    bad = submit(FILLS, "fills", run_id="sim-bad", root=root)
    corrupt(bad)

    res = run_notebook(root)

    nb = Path(res["notebook"])
    assert nb.parent == root / "runs" and RUN_NAME.match(nb.name)
    assert (res["outcome"], res["error"], res["recorded_by"]) == ("ok", None, "ingest")
    assert res["accepted"] == sorted(r.job_id for r in good)
    assert [(r["job_id"], r["code"]) for r in res["rejected"]] == [(bad.job_id, "size_mismatch")]
    [(outcome, acc, rej, dup, notebook, error, pid)] = runs_for(root, nb)
    assert (outcome, acc, rej, dup, notebook, error) == ("ok", 2, 1, 0, str(nb), None)
    assert pid != os.getpid()  # ingest ran in the notebook's kernel, not here
    text = nb.read_text()
    assert bad.job_id in text and "size_mismatch" in text and error_outputs(nb) == []
    assert json.loads(text)["cells"][1]["metadata"]["tags"] == ["parameters"]


def test_papermill_command_runs_the_repo_notebook(root, tmp_path):
    assert OPS_NOTEBOOK.read_text() == ingest_notebook().read_text()  # the shipped copy is the repo's
    jobs = [submit(FILLS, "fills", run_id=f"sim-{i}", root=root) for i in range(3)]
    (root / "runs").mkdir()
    outs = []
    for n in range(2):  # the second run finds nothing to do and is recorded all the same
        out = root / "runs" / f"2025010{n + 1}T020000Z-ingest.ipynb"
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "papermill",
                "--no-progress-bar",
                str(OPS_NOTEBOOK),
                str(out),
                "-p",
                "root",
                str(root),
                "-p",
                "run_notebook",
                str(out),
            ],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        assert p.returncode == 0, p.stderr
        outs.append(out)
    assert [r[:5] for r in runs_for(root, outs[0])] == [("ok", 3, 0, 0, str(outs[0]))]
    assert [r[:5] for r in runs_for(root, outs[1])] == [("ok", 0, 0, 0, str(outs[1]))]
    assert run_notebooks(root) == [o.name for o in outs]
    assert all(job_count(root, j.job_id) == 1 for j in jobs)
    assert "Nothing to ingest" in outs[1].read_text()


def test_failure_outside_ingest_is_recorded_by_the_runner(root, tmp_path):
    """The inbox is a symlink to a share that is not mounted: ingest fails before it takes the writer
    lock, so it cannot record itself; run_notebook records the run as failed and keeps the annotated
    notebook. Once the share is back, the next run ingests the waiting job."""
    job = submit(FILLS, "fills", root=root)
    share = tmp_path / "share"
    os.rename(root / "inbox", share)
    os.symlink(tmp_path / "unmounted" / "inbox", root / "inbox")

    with pytest.raises(RunFailed) as ei:
        run_notebook(root)

    nb = ei.value.notebook
    assert nb.exists() and nb.parent == root / "runs"
    assert str(nb) in str(ei.value)
    res = ei.value.result
    assert (res["outcome"], res["recorded_by"], res["notebook"]) == ("failed", "run_notebook", str(nb))
    [(outcome, acc, rej, dup, notebook, error, pid)] = runs_for(root, nb)
    assert (outcome, notebook, pid) == ("failed", str(nb), os.getpid())
    assert "inbox" in error and error == res["error"]
    assert error_outputs(nb) and "An Exception was encountered" in nb.read_text()  # papermill's annotation

    os.unlink(root / "inbox")
    os.rename(share, root / "inbox")
    ok = run_notebook(root)
    assert (ok["outcome"], ok["accepted"]) == ("ok", [job.job_id])


def test_failure_inside_ingest_is_recorded_once(root, tmp_path):
    """A cron line with a typo (`-p max_jobs all`): ingest fails inside its run, records the failure with
    the notebook path, and papermill exits non-zero leaving the annotated notebook; run_notebook does not
    add a second row for the same run."""
    job = submit(FILLS, "fills", root=root)
    (root / "runs").mkdir()
    out = root / "runs" / "20250101T020000Z-ingest.ipynb"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "--no-progress-bar",
            str(OPS_NOTEBOOK),
            str(out),
            "-p",
            "root",
            str(root),
            "-p",
            "run_notebook",
            str(out),
            "-p",
            "max_jobs",
            "all",
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert p.returncode != 0 and "TypeError" in p.stderr
    [(outcome, *_, notebook, error, pid)] = runs_for(root, out)
    assert (outcome, notebook) == ("failed", str(out)) and error.startswith("TypeError")
    assert error_outputs(out) == ["TypeError"]

    with pytest.raises(RunFailed) as ei:
        run_notebook(root, max_jobs="all")
    assert ei.value.result["recorded_by"] == "ingest"
    assert [r[0] for r in runs_for(root, ei.value.notebook)] == ["failed"]  # one row, not two
    assert job_count(root, job.job_id) == 0 and (root / "inbox" / job.job_id).is_dir()  # nothing half-done


def test_retention_keeps_the_newest_runs_keep_notebooks(root):
    root.mkdir()
    (root / "bus.toml").write_text("runs_keep = 2\n")
    results = []
    for i in range(3):
        submit(FILLS, "fills", run_id=f"sim-{i}", root=root)
        results.append(run_notebook(root))
    assert run_notebooks(root) == [Path(r["notebook"]).name for r in results[1:]]
    assert not Path(results[0]["notebook"]).exists()
    assert len(rows(root, "SELECT * FROM catalog.ingest_runs")) == 3  # the catalog keeps every run's row


# --- the daemon ----------------------------------------------------------------------------------------

DAEMON = """
import logging, sys
from artifact_bus.schedule import daemon
if {debug}:
    lg = logging.getLogger("artifact_bus"); lg.setLevel(logging.DEBUG)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    lg.addHandler(h)
n = daemon({root!r}, interval={interval}, papermill={papermill}{extra})
print(f"cycles={{n}}")
"""


class Daemon:
    "`daemon()` in a subprocess; its stderr lines are collected as they come."

    def __init__(self, root, cwd, *, interval=0.5, papermill=False, debug=False, exports_delay=None):
        extra = "" if exports_delay is None else f", exports_delay={exports_delay}"
        code = DAEMON.format(root=str(root), interval=interval, papermill=papermill, debug=debug, extra=extra)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=cwd,
            env=clean_env(),
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, text: str, count: int = 1, since: int = 0) -> int:
        "Wait until `count` lines from line `since` on contain `text`; returns the number of lines read so far."

        def seen():
            n = sum(text in l for l in self.lines[since:])
            if n < count and self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"daemon exited {self.proc.returncode} before logging {text!r}\n{self.log()}")
            return n >= count

        wait_until(seen, f"{count}x {text!r} in the daemon's log")
        return len(self.lines)

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=HANG_GUARD)
        self._reader.join(HANG_GUARD)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=HANG_GUARD)


@pytest.fixture
def daemons(tmp_path):
    started = []

    def start(root, **kw):
        d = Daemon(root, tmp_path, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def test_daemon_ingests_while_running_and_stops_cleanly_on_sigterm(root, daemons):
    root.mkdir()
    (root / "bus.toml").write_text("batch_size = 1\n")  # many batches, so SIGTERM likely lands mid-run
    d = daemons(root)
    d.wait_line("daemon started")
    first = submit(FILLS, "fills", run_id="first", root=root)
    wait_until(lambda: job_count(root, first.job_id) == 1, "the daemon to ingest a job submitted while it runs")
    d.wait_line("cycle 1: ingest run")

    burst = [submit(FILLS, "fills", run_id=f"burst-{i}", root=root) for i in range(15)]
    wait_until(lambda: job_count(root, burst[0].job_id) == 1, "the daemon to start on the burst")
    assert d.stop(signal.SIGTERM) == 0, d.log()
    assert "SIGTERM received: stopping after the current batch" in d.log()
    assert "daemon stopped after" in d.log()
    assert d.proc.stdout.read().startswith("cycles=")

    # the batch in progress was finished: nothing to recover, both locks free, every job exactly once
    assert not (root / INTENT).exists()
    assert lock_holder(root / "writer.lock") is None
    rep = ingest(root)
    assert rep.recovered == 0
    for j in [first, *burst]:
        assert job_count(root, j.job_id) == 1
    assert [n for n in os.listdir(root / "inbox") if not n.startswith(".")] == []
    with daemon_lock(load_config(root)):
        pass


def test_second_daemon_is_refused_naming_the_first(root, daemons):
    first = daemons(root)
    first.wait_line("daemon started")
    code = f"from artifact_bus.schedule import daemon; daemon({str(root)!r}, interval=0.5)"
    p = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert p.returncode != 0
    assert f"daemon already running on {root} (pid {first.proc.pid}, host " in p.stderr, p.stderr
    assert first.proc.poll() is None  # the first one is unaffected
    assert first.stop(signal.SIGINT) == 0, first.log()


def test_daemon_survives_a_busy_writer(root, daemons, tmp_path):
    "A manual ingest holding the writer lock makes the daemon log and retry, not die."
    root.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom artifact_bus.catalog_db import WriterLock\n"
            f"with WriterLock({str(root / 'writer.lock')!r}):\n"
            "    print('locked', flush=True); sys.stdin.readline()",
        ],
        env=clean_env(),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        d = daemons(root)
        d.wait_line("daemon started")
        job = submit(FILLS, "fills", root=root)
        d.wait_line(f"cycle skipped: writer already running (pid {holder.pid}, host ")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=HANG_GUARD) == 0
        wait_until(lambda: job_count(root, job.job_id) == 1, "the daemon to ingest once the writer is free")
        assert d.proc.poll() is None
        assert d.stop() == 0, d.log()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=HANG_GUARD)


def test_daemon_papermill_mode_runs_only_when_there_is_work(root, daemons):
    d = daemons(root, interval=0.2, papermill=True, debug=True)
    d.wait_line("daemon started")
    d.wait_line("inbox empty", count=5)  # five idle wake-ups...
    assert run_notebooks(root) == []  # ...and no papermill run

    job = submit(FILLS, "fills", root=root)
    wait_until(lambda: job_count(root, job.job_id) == 1, "the papermill cycle to ingest the job")
    seen = d.wait_line("cycle 1: papermill run")
    d.wait_line("inbox empty", count=3, since=seen)  # idle again afterwards
    assert d.stop() == 0, d.log()
    [name] = run_notebooks(root)
    [(outcome, acc, *_)] = runs_for(root, root / "runs" / name)
    assert (outcome, acc) == ("ok", 1)


@pytest.mark.parametrize("delay", [60, 0])
def test_daemon_makes_jobs_queryable_before_it_regenerates_exports(root, daemons, delay):
    """In-process, a cycle never waits for the golden exports: they run once the inbox is drained — or, with
    exports_delay=0, right after each cycle — and end up complete."""
    d = daemons(root, interval=0.2, exports_delay=delay)
    d.wait_line("daemon started")
    jobs = []
    for i in range(12):  # a steady trickle: several cycles while jobs keep arriving
        jobs.append(submit(FILLS, "fills", run_id=f"trickle-{i}", root=root))
        time.sleep(0.05)
    wait_until(lambda: all(job_count(root, j.job_id) == 1 for j in jobs), "the daemon to ingest every job")
    from artifact_bus.export import export_status, pending_changes

    cfg = load_config(root)
    wait_until(
        lambda: pending_changes(cfg) is None and export_status(cfg).get("fills", {}).get("rows") == 12 * FILLS.num_rows,
        "the exports to catch up with every job",
    )
    assert d.stop() == 0, d.log()
    cycles = [l for l in d.lines if re.search(r"cycle \d+: ingest run ", l)]
    exports = [l for l in d.lines if "the exports: " in l]
    assert cycles and not [l for l in cycles if "exports regenerated" in l], d.log()  # the data cycles never export
    assert exports and all("exports regenerated: " in l and "fills" in l for l in exports), d.log()
    if delay == 0:
        assert len(exports) == len(cycles), d.log()  # overdue at once: after every cycle
