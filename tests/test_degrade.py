"""When the bus root cannot be written, producers degrade without loss and never leave a partial job.

(a) missing mount (the root's parent folder is gone): the job goes to this machine's spool (status
    'spooled', exactly one SpooledWarning), `required=True` raises BusUnavailable, `artifact-bus flush`
    moves it into the inbox once the mount is back, and the next successful submit flushes by itself;
(b) a really read-only filesystem (a tmpfs remounted `ro`: as root, permission bits are no test): spooled;
(c) disk full mid-write: a process limited by RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG)
    gets BusUnavailable with a clear message and nothing appears in inbox/ or stays in inbox/.tmp; and a
    real 1 MiB tmpfs: a large job is spooled whole, cannot be flushed while the bus is too small (nothing
    partial appears), and is flushed and ingested intact once the filesystem grows.
Every mount made here is unmounted in a `finally`.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import pytest
from helpers import HANG_GUARD, clean_env
from reliability_helpers import CLI, assert_bus_consistent, inbox_jobs, remount, run, tmp_entries, tmpfs

from artifact_bus import BusUnavailable, SpooledWarning, catalog, flush, ingest, job, load_config, submit
from artifact_bus.protocol import validate_job
from artifact_bus.submit import spool_dir, spooled_jobs
from artifact_bus.testing import fills_table


@pytest.fixture
def spool(tmp_path, monkeypatch) -> Path:
    "A private spool for this test (never the developer's ~/.cache)."
    d = tmp_path / "spool"
    monkeypatch.setenv("ARTIFACT_BUS_SPOOL", str(d))
    return d


def _submit_recording(data, kind, **kw):
    "submit(), returning (receipt, the SpooledWarnings it raised)."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = submit(data, kind, **kw)
    return r, [w for w in caught if issubclass(w.category, SpooledWarning)]


def _cli(*args, env=None):
    return subprocess.run(
        [CLI, *map(str, args)], capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env(**(env or {}))
    )


def _spool_leftovers(root) -> list[str]:
    "In-progress entries left in the spool (a failed write must clean up after itself)."
    d = spool_dir(load_config(root)) / "tmp"
    return sorted(os.listdir(d)) if d.is_dir() else []


# --- (a) missing mount -----------------------------------------------------------------------------------


def test_missing_mount_spools_then_flushes(tmp_path, spool):
    mnt = tmp_path / "mnt"  # the mount point is not there: the volume is not mounted
    root = mnt / "bus"
    r, warned = _submit_recording(fills_table(10, seed=1), "fills", run_id="offline", root=root)
    assert r.status == "spooled"
    assert len(warned) == 1, [str(w.message) for w in warned]
    assert r.job_id in str(warned[0].message)
    assert not mnt.exists(), "submit created the missing mount point"
    assert Path(r.path).parent == spool_dir(load_config(root)) / "jobs"
    validate_job(r.path)  # a complete, committed job waits in the spool
    assert spooled_jobs(root) == [r.job_id]

    with pytest.raises(BusUnavailable) as e:
        submit(fills_table(5, seed=2), "fills", root=root, required=True)
    assert str(root) in str(e.value)
    assert spooled_jobs(root) == [r.job_id] and _spool_leftovers(root) == []
    # the same through the CLI with ARTIFACT_BUS_REQUIRED: exit 5, one error line
    pq_file = tmp_path / "one.parquet"
    import pyarrow.parquet as pq

    pq.write_table(fills_table(4, seed=3), pq_file)
    p = _cli(
        "submit",
        pq_file,
        "--kind",
        "fills",
        "--root",
        root,
        env={"ARTIFACT_BUS_SPOOL": spool, "ARTIFACT_BUS_REQUIRED": "1"},
    )
    assert p.returncode == 5, p
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("error: bus root"), p.stderr
    assert spooled_jobs(root) == [r.job_id] and not mnt.exists()

    # the volume comes back: `artifact-bus flush` moves the job into the inbox
    mnt.mkdir()
    p = _cli("flush", "--root", root, env={"ARTIFACT_BUS_SPOOL": spool})
    assert p.returncode == 0, p.stderr
    assert inbox_jobs(root) == {r.job_id}
    assert spooled_jobs(root) == []
    validate_job(root / "inbox" / r.job_id)

    # another bus whose mount is missing: a later successful submit flushes the spool by itself
    mnt2 = tmp_path / "mnt2"
    root2 = mnt2 / "bus"
    r2, warned = _submit_recording(fills_table(6, seed=4), "fills", root=root2)
    assert r2.status == "spooled" and len(warned) == 1
    mnt2.mkdir()
    r3, warned = _submit_recording(fills_table(7, seed=5), "fills", root=root2)
    assert r3.status == "committed" and warned == []
    assert inbox_jobs(root2) == {r2.job_id, r3.job_id}
    assert spooled_jobs(root2) == []

    assert ingest(root).accepted == [r.job_id]
    assert sorted(ingest(root2).accepted) == sorted([r2.job_id, r3.job_id])
    assert_bus_consistent(root, {r.job_id: {"fills": 10}})
    assert_bus_consistent(root2, {r2.job_id: {"fills": 6}, r3.job_id: {"fills": 7}})


# --- (b) read-only filesystem ------------------------------------------------------------------------------


def test_read_only_filesystem_spools(tmp_path, spool):
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "64m"):
        root = mnt / "bus"
        first = submit(fills_table(8, seed=1), "fills", root=root)
        ingest(root)
        remount(mnt, "ro")
        r, warned = _submit_recording(fills_table(9, seed=2), "fills", root=root)
        assert r.status == "spooled"
        assert len(warned) == 1 and "Read-only file system" in str(warned[0].message), [str(w.message) for w in warned]
        with pytest.raises(BusUnavailable, match="Read-only file system"):
            submit(fills_table(3, seed=3), "fills", root=root, required=True)
        with pytest.raises(BusUnavailable):
            flush(root)  # still read-only: the job stays spooled
        assert spooled_jobs(root) == [r.job_id] and _spool_leftovers(root) == []
        with catalog(root) as con:  # readers still work on a read-only bus
            assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == 8

        remount(mnt, "rw")
        assert flush(root) == [r.job_id]
        assert ingest(root).accepted == [r.job_id]
        assert_bus_consistent(root, {first.job_id: {"fills": 8}, r.job_id: {"fills": 9}})


# --- (c) disk full -------------------------------------------------------------------------------------

FSIZE_LIMITED = """
import json, resource, signal, sys, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead of killing us
from artifact_bus import BusUnavailable, SpooledWarning, job
from artifact_bus.testing import fills_table
root, required = sys.argv[1], sys.argv[2] == "1"
small, large = fills_table(20, seed=1), fills_table(300_000, seed=2)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
try:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with job(root=root, required=required, run_id="too-big") as j:
            j.add("fills", small)   # fits
            j.add("fills", large)   # does not: EFBIG mid-write
    print(json.dumps({"status": j.receipt.status, "warnings": [str(x.message) for x in w]}))
except BusUnavailable as e:
    print(json.dumps({"error": str(e), "job_id": j.job_id}))
"""


@pytest.mark.parametrize("required", [True, False])
def test_file_too_large_mid_write_leaves_nothing(tmp_path, root, spool, required):
    ok = submit(fills_table(5, seed=9), "fills", root=root)  # a bus with a job already waiting
    out = json.loads(
        run(FSIZE_LIMITED, root, "1" if required else "0", cwd=tmp_path, env={"ARTIFACT_BUS_SPOOL": spool}).stdout
    )
    if required:
        assert "error" in out, out
        msg = out["error"]
        assert "File too large" in msg and out["job_id"] in msg and "not written" in msg, msg
    else:
        # the spool is on the same limit: either it holds the whole job, or a clear error says nothing was kept
        assert out.get("status") == "spooled" or "File too large" in out.get("error", ""), out
    assert inbox_jobs(root) == {ok.job_id}, "a partial job became visible in the inbox"
    assert tmp_entries(root) == set(), f"leftovers in inbox/.tmp: {tmp_entries(root)}"
    assert _spool_leftovers(root) == []
    for jid in spooled_jobs(root):
        validate_job(spool_dir(load_config(root)) / "jobs" / jid)  # only ever whole jobs in the spool
    rep = ingest(root)
    assert rep.accepted == [ok.job_id] and rep.rejected == []


def test_small_filesystem_full_spools_whole_job_then_flushes_when_it_grows(tmp_path, spool):
    mnt = tmp_path / "small"
    with tmpfs(mnt, "1m"):
        root = mnt / "bus"
        ok = submit(fills_table(5, seed=9), "fills", root=root)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with job(root=root, run_id="big") as j:
                j.add("fills", fills_table(10, seed=1))
                j.add("fills", fills_table(200_000, seed=2))  # ~MBs: ENOSPC mid-write
        spooled = [w for w in caught if issubclass(w.category, SpooledWarning)]
        assert j.receipt.status == "spooled" and len(spooled) == 1, [str(w.message) for w in caught]
        assert "No space left on device" in str(spooled[0].message)
        assert inbox_jobs(root) == {ok.job_id} and tmp_entries(root) == set()
        validate_job(j.receipt.path)  # both artifacts, whole, in the spool

        with pytest.raises(BusUnavailable, match="No space left on device"):
            flush(root)  # still too small: nothing partial may appear
        assert inbox_jobs(root) == {ok.job_id} and tmp_entries(root) == set()
        assert spooled_jobs(root) == [j.job_id]
        with pytest.raises(BusUnavailable, match="No space left on device"):
            submit(fills_table(200_000, seed=3), "fills", root=root, required=True)
        assert inbox_jobs(root) == {ok.job_id} and tmp_entries(root) == set()

        remount(mnt, "size=64m")
        assert flush(root) == [j.job_id]
        rep = ingest(root)
        assert sorted(rep.accepted) == sorted([ok.job_id, j.job_id]) and rep.rejected == []
        assert_bus_consistent(root, {ok.job_id: {"fills": 5}, j.job_id: {"fills": 200_010}})
