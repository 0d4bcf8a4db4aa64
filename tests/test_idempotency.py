"""Idempotency: a retried producer (same key, another process) is ingested once, and ingesting the same
state again changes nothing at all.

- `submit(..., key=K)` from two separate processes: the first job is accepted, the second is recorded in
  `catalog.jobs` with status 'duplicate' and `duplicate_of` the first, its data kept under duplicates/ but
  never in the bus views — whether both land in one batch, in two batches of one run, or in two runs.
- A key whose first job was rejected does not block the retry.
- Ingesting again (another process, nothing new): every catalog table identical, no new snapshot
  (published/CURRENT unchanged, same catalog_version), exports untouched.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from reliability_helpers import doctor_problems, run, write_bus_toml, writer_tables

from artifact_bus import catalog, submit
from artifact_bus.testing import fills_table

SUBMIT_KEYED = """
import json, sys
from artifact_bus import submit
from artifact_bus.testing import fills_table
root, key, rows, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = submit(fills_table(rows, seed=seed), "fills", key=key, run_id="retried", producer="retrying-producer", root=root)
print(json.dumps({"job_id": r.job_id, "status": r.status}))
"""

INGEST = """
import json, sys
from artifact_bus import ingest
r = ingest(sys.argv[1])
print(json.dumps({"accepted": r.accepted, "rejected": r.rejected, "duplicates": r.duplicates}))
"""


def _submit_keyed(root, key, rows, seed) -> str:
    out = json.loads(run(SUBMIT_KEYED, root, key, rows, seed).stdout)
    assert out["status"] == "committed"
    return out["job_id"]


def _state(root):
    "Everything a no-op ingest must leave as it was."
    exports = {  # full exports' files, append exports' links and the parts of their generations
        str(p.relative_to(root / "exports")): os.readlink(p)
        if p.is_symlink()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "exports").rglob("*"))
        if p.is_symlink() or p.is_file()
    }
    snaps = sorted(p.name for p in (root / "published").iterdir())
    return {
        "tables": writer_tables(root),
        "current": (root / "published" / "CURRENT").read_text(),
        "snapshots": snaps,
        "exports": exports,
        "store": sorted(str(p.relative_to(root)) for p in (root / "store").rglob("*")),
    }


@pytest.mark.parametrize("when", ["same_batch", "separate_batches", "separate_runs"])
def test_same_key_from_two_processes_is_ingested_once(root, when):
    K = "sim-042/fills"
    write_bus_toml(root, batch_size=1 if when == "separate_batches" else 50)
    other = submit(fills_table(3, seed=99), "fills", key="another-key", root=root).job_id
    first = _submit_keyed(root, K, 10, 1)
    if when == "separate_runs":
        assert json.loads(run(INGEST, root).stdout)["accepted"] == [other, first]
    second = _submit_keyed(root, K, 12, 2)  # the retry: another process, even other data
    assert first != second
    rep = json.loads(run(INGEST, root).stdout)
    assert rep["rejected"] == []
    assert rep["duplicates"] == [{"job_id": second, "duplicate_of": first, "key": K}]
    assert rep["accepted"] == ([] if when == "separate_runs" else [other, first])

    with catalog(root) as con:
        rows = con.execute(
            "SELECT job_id, status, duplicate_of FROM catalog.jobs WHERE key = ? ORDER BY job_id", [K]
        ).fetchall()
        assert rows == [(first, "accepted", None), (second, "duplicate", first)]
        assert con.execute("SELECT count(*) FROM catalog.artifacts WHERE job_id = ?", [second]).fetchone()[0] == 0
        assert con.execute("SELECT _job_id, count(*) FROM bus.fills GROUP BY 1 ORDER BY 1").fetchall() == sorted(
            [(other, 3), (first, 10)]
        )
        dup_path = con.execute("SELECT path FROM catalog.jobs WHERE job_id = ?", [second]).fetchone()[0]
    assert dup_path.startswith("duplicates/")
    assert (root / dup_path / "manifest.json").is_file() and (root / dup_path / "COMMIT").is_file()  # kept, not lost

    # ingest again over the same state: nothing changes, no new snapshot version
    before = _state(root)
    cur = json.loads(before["current"])
    rep = json.loads(run(INGEST, root).stdout)
    assert rep == {"accepted": [], "rejected": [], "duplicates": []}
    after = _state(root)
    assert json.loads(after["current"])["catalog_version"] == cur["catalog_version"]
    for k in before:
        assert after[k] == before[k], f"a no-op ingest changed {k}"
    # and a third retry after all that is still a duplicate of the first
    third = _submit_keyed(root, K, 7, 3)
    rep = json.loads(run(INGEST, root).stdout)
    assert rep["duplicates"] == [{"job_id": third, "duplicate_of": first, "key": K}]
    assert doctor_problems(root) == []


def test_a_rejected_first_attempt_does_not_block_the_retry(root):
    K = "run-7/features"
    first = _submit_keyed(root, K, 10, 1)
    # the first attempt arrives damaged (one flipped byte): it is rejected
    f = root / "inbox" / first / "fills.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    rep = json.loads(run(INGEST, root).stdout)
    assert [r["code"] for r in rep["rejected"]] == ["checksum_mismatch"]
    second = _submit_keyed(root, K, 10, 1)
    rep = json.loads(run(INGEST, root).stdout)
    assert rep == {"accepted": [second], "rejected": [], "duplicates": []}
    with catalog(root) as con:
        assert con.execute("SELECT job_id, status FROM catalog.jobs").fetchall() == [(second, "accepted")]
        assert con.execute("SELECT job_id, code FROM catalog.rejections").fetchall() == [(first, "checksum_mismatch")]
