"""The operator is told the truth: through the real `artifact-bus` command, in separate processes.

- a mistyped root is never taken for a new, empty bus: `status`, `catalog` and `doctor` exit 7 with
  `error: no bus at …` and create nothing; `artifact-bus init` creates a bus on purpose;
- a broken contract or export definition is named by `doctor` (file and problem) and by `status` (with the
  jobs it holds in the inbox); only that kind's jobs or that export wait, everything else goes on;
- `status` shows the last failed run and its reason, and a running daemon (pid, since);
- the daemon picks up edits of `bus.toml` and contracts without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import HANG_GUARD, clean_env, cli_argv

from artifact_bus import submit


@pytest.fixture
def cli(tmp_path):
    def run(*args):
        return subprocess.run(
            [*cli_argv(), *map(str, args)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )

    return run


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    return p


def wait_until(pred, what: str, deadline: float = 90):
    end = time.monotonic() + deadline
    while not (got := pred()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.1)
    return got


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_mistyped_root_is_not_found_and_init_creates_a_bus(cli, tmp_path):
    typo = tmp_path / "bsu"
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (typo, empty):
        for cmd in ("status", "catalog", "doctor"):
            p = cli(cmd, "--root", root)
            assert p.returncode == 7, (cmd, p.returncode, p.stdout, p.stderr)
            assert p.stderr.startswith(f"error: no bus at {root}: "), p.stderr
            assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not typo.exists() and tree(empty) == []  # nothing created

    out = json.loads(ok(cli("init", "--root", typo, "--json")).stdout)
    assert out["created"] is True and out["snapshot"].startswith("snap-")
    for d in ("inbox/.tmp", "store", "rejected", "duplicates", "published", "exports"):
        assert (typo / d).is_dir(), d
    assert json.loads(ok(cli("init", "--root", typo, "--json")).stdout)["created"] is False
    st = json.loads(ok(cli("status", "--root", typo, "--json")).stdout)
    assert (st["jobs"], st["last_run"], st["daemon"], st["broken_contracts"]) == (0, None, None, {})
    assert json.loads(ok(cli("catalog", "--root", typo, "--json")).stdout)["kinds"] == []
    assert ok(cli("doctor", "--root", typo)).stdout.rstrip().endswith("all good")


def test_broken_contract_and_export_are_named_and_hold_only_their_own(cli, tmp_path):
    root = tmp_path / "bus"
    ok(cli("init", "--root", root))
    mine = tmp_path / "my_exports"
    mine.mkdir()
    (mine / "good.sql").write_text("SELECT count(*) AS n FROM catalog.jobs")
    (mine / "bad.sql").write_text("SELECT 1; DROP TABLE catalog.jobs")
    (root / "bus.toml").write_text(f'exports = ["{mine}"]\n')
    (root / "contracts").mkdir()
    (root / "contracts" / "fills.toml").write_text("[columns]\nqty = 3\n")
    held = submit(pa.table({"qty": [1.0]}), "fills", root=root)
    passed = submit(pa.table({"x": [1]}), "quotes", root=root)
    rep = json.loads(ok(cli("ingest", "--root", root, "--json")).stdout)
    assert rep["accepted"] == [passed.job_id] and [h["job_id"] for h in rep["held"]] == [held.job_id]

    st = json.loads(ok(cli("status", "--root", root, "--json")).stdout)
    assert st["broken_contracts"]["fills"]["held"] == 1
    assert "fills.toml" in st["broken_contracts"]["fills"]["error"]
    assert st["exports"]["bad"]["status"] == "error"
    assert f"{mine / 'bad.sql'}: an export must hold exactly one SELECT" in st["exports"]["bad"]["error"]
    assert (st["exports"]["good"]["status"], st["exports"]["good"]["rows"]) == ("ok", 1)
    text = ok(cli("status", "--root", root)).stdout
    assert "contract:    fills: BROKEN, 1 jobs held in the inbox" in text, text

    p = cli("doctor", "--root", root)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "PROBLEM contract fills:" in p.stdout and "1 fills jobs wait in the inbox" in p.stdout, p.stdout
    assert "PROBLEM export bad: broken definition:" in p.stdout and "bad.sql" in p.stdout, p.stdout
    assert "contract fills" in p.stderr and "export bad" in p.stderr

    # fixed: the held job goes in; the export's entry was kept all along and is now fine
    (root / "contracts" / "fills.toml").write_text('[columns]\nqty = "double"\n')
    (mine / "bad.sql").write_text("SELECT 2 AS y")
    rep = json.loads(ok(cli("ingest", "--root", root, "--json")).stdout)
    assert rep["accepted"] == [held.job_id] and rep["held"] == []
    st = json.loads(ok(cli("status", "--root", root, "--json")).stdout)
    assert st["broken_contracts"] == {} and st["exports"]["bad"]["status"] == "ok"
    # an export's entry goes only with its file
    (mine / "bad.sql").unlink()
    ok(cli("export", "--root", root))
    assert "bad" not in json.loads(ok(cli("status", "--root", root, "--json")).stdout)["exports"]


def test_status_shows_the_last_failed_run(cli, tmp_path):
    from artifact_bus import load_config
    from artifact_bus.ingest import record_run

    root = tmp_path / "bus"
    ok(cli("init", "--root", root))
    record_run(
        load_config(root),
        started=dt.datetime.now(dt.timezone.utc),
        outcome="failed",
        error="OSError: [Errno 28] No space left on device",
    )
    submit(pa.table({"x": [1]}), "quotes", root=root)
    ok(cli("ingest", "--root", root))  # a later good run: the failure is still told
    st = json.loads(ok(cli("status", "--root", root, "--json")).stdout)
    assert st["last_run"]["outcome"] == "ok"
    assert st["last_failed"]["error"] == "OSError: [Errno 28] No space left on device"
    assert "last failed: run 1 at " in ok(cli("status", "--root", root)).stdout


def test_daemon_is_shown_and_picks_up_edits_without_a_restart(cli, tmp_path):
    root = tmp_path / "bus"
    ok(cli("init", "--root", root))
    proc = subprocess.Popen(
        [*cli_argv(), "daemon", "--root", str(root), "--interval", "0.2", "--exports-delay", "0"],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def shown():
            d = json.loads(ok(cli("status", "--root", root, "--json")).stdout)["daemon"]
            return d if d and d["pid"] == proc.pid else None

        d = wait_until(shown, "status to show the daemon")
        assert d["since"] and d["host"]
        assert f"daemon:      running (pid {proc.pid}" in ok(cli("status", "--root", root)).stdout

        first = submit(pa.table({"x": [1]}), "quotes", root=root)
        wait_until(lambda: (root / "store").exists() and not (root / "inbox" / first.job_id).exists(), "the first job")
        # while it runs: an export folder in bus.toml, and a contract
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "quote_count.sql").write_text("SELECT count(*) AS n FROM bus.quotes")
        (root / "bus.toml").write_text(f'exports = ["{extra}"]\n')
        (root / "contracts").mkdir()
        (root / "contracts" / "quotes.toml").write_text('[columns]\nbid = "double"\n')
        bad = submit(pa.table({"x": [2]}), "quotes", root=root)
        wait_until(lambda: (root / "rejected" / bad.job_id).exists(), "the contract written meanwhile to reject a job")
        status_file = root / "exports" / "_export_status.json"
        wait_until(lambda: "quote_count" in json.loads(status_file.read_text()), "the export added to bus.toml to run")
        assert json.loads(status_file.read_text())["quote_count"]["status"] == "ok"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=HANG_GUARD)
        err = proc.stderr.read()
    assert rc == 0, err
    assert "the bus config changed" in err, err
    assert json.loads(ok(cli("status", "--root", root, "--json")).stdout)["daemon"] is None  # gone on a clean exit
