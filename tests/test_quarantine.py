"""Bad jobs are quarantined with a machine-readable reason, payload kept, while good jobs of the same
batch are accepted. Jobs are corrupted the way a buggy producer or a hostile user would: submitted
normally, then edited on disk, with manifest.json and COMMIT rewritten when the corruption must pass
the commit check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import sha256

from artifact_bus import SchemaMismatch, catalog, ingest, submit
from artifact_bus.testing import fills_table


def write_manifest(job_dir, manifest=None, *, raw: bytes | None = None, commit: bool = True) -> None:
    "Replace manifest.json (with `manifest` or `raw` bytes) and, if `commit`, a COMMIT that matches it."
    if raw is None:
        raw = json.dumps(manifest, indent=1).encode()
    (job_dir / "manifest.json").write_bytes(raw)
    if commit:
        (job_dir / "COMMIT").write_text("sha256:" + hashlib.sha256(raw).hexdigest())


def read_manifest(job_dir) -> dict:
    return json.loads((job_dir / "manifest.json").read_bytes())


def restate_file(job_dir, m, name="fills.parquet", rows=None):
    "Make the manifest's bytes/checksum (and rows) describe the file as it now is."
    data = (job_dir / name).read_bytes()
    a = next(a for a in m["artifacts"] if a["file"] == name)
    a["bytes"], a["checksum"] = len(data), "sha256:" + hashlib.sha256(data).hexdigest()
    if rows is not None:
        a["rows"] = rows
    return m


# --- one corruption per validation failure -----------------------------------------------------------


def not_parquet(d, ctx):
    (d / "fills.parquet").write_bytes(b"definitely not parquet\n" * 64)
    write_manifest(d, restate_file(d, read_manifest(d)))  # size and checksum consistent with the junk


def checksum_mismatch(d, ctx):
    data = bytearray((d / "fills.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    (d / "fills.parquet").write_bytes(bytes(data))


def size_mismatch(d, ctx):
    with open(d / "fills.parquet", "ab") as f:
        f.write(b"\0" * 16)


def row_count_mismatch(d, ctx):
    m = read_manifest(d)
    m["artifacts"][0]["rows"] += 1
    write_manifest(d, m)


def schema_mismatch(d, ctx):
    t = pq.read_table(d / "fills.parquet")
    pq.write_table(t.rename_columns(["quantity" if n == "qty" else n for n in t.column_names]), d / "fills.parquet")
    write_manifest(d, restate_file(d, read_manifest(d)))  # bytes, checksum and rows right; schema stale


def file_missing(d, ctx):
    (d / "fills.parquet").unlink()


def file_unlisted(d, ctx):
    shutil.copyfile(d / "fills.parquet", d / "extra.parquet")


def symlink_outside(d, ctx):
    # the artifact becomes a link to a file outside the root that has the very same bytes: only the
    # link itself gives it away
    shutil.copyfile(d / "fills.parquet", ctx["outside_file"])
    (d / "fills.parquet").unlink()
    os.symlink(ctx["outside_file"], d / "fills.parquet")


def job_folder_symlink(d, ctx):
    # the whole job folder is a link to a complete, valid job outside the root
    shutil.move(str(d), ctx["outside_dir"])
    os.symlink(ctx["outside_dir"], d)


def kind_invalid(d, ctx):
    m = read_manifest(d)
    m["artifacts"][0]["kind"] = "fills; drop table x"
    write_manifest(d, m)


def commit_mismatch(d, ctx):
    m = read_manifest(d)
    m["producer"] = "tampered-after-commit"
    write_manifest(d, m, commit=False)


def manifest_invalid_json(d, ctx):
    write_manifest(d, raw=b'{"protocol": 1, "job_id": "' + d.name.encode() + b'", "artifacts": [')


def protocol_version(d, ctx):
    m = read_manifest(d)
    m["protocol"] = 2
    write_manifest(d, m)


BAD = {
    "not_parquet": (not_parquet, "not_parquet"),
    "checksum_mismatch": (checksum_mismatch, "checksum_mismatch"),
    "size_mismatch": (size_mismatch, "size_mismatch"),
    "row_count_mismatch": (row_count_mismatch, "row_count_mismatch"),
    "schema_mismatch": (schema_mismatch, "schema_mismatch"),
    "file_missing": (file_missing, "file_missing"),
    "file_unlisted": (file_unlisted, "file_unlisted"),
    "symlink_outside": (symlink_outside, "unsafe_entry"),
    "job_folder_symlink": (job_folder_symlink, "unsafe_entry"),
    "kind_invalid": (kind_invalid, "kind_invalid"),
    "commit_mismatch": (commit_mismatch, "commit_mismatch"),
    "manifest_invalid_json": (manifest_invalid_json, "manifest_invalid_json"),
    "protocol_version": (protocol_version, "protocol_version"),
}


def snapshot(d) -> dict:
    "What a job folder holds: file name -> content hash, or the target of a symlink."
    out = {}
    for e in os.scandir(d):
        out[e.name] = ("link", os.readlink(e.path)) if e.is_symlink() else ("file", sha256(e.path))
    return out


def test_one_batch_of_good_and_bad_jobs(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = {"outside_file": outside / "secret.parquet", "outside_dir": outside / "job"}

    good, bad, seed = [], {}, 0

    def make(run_id, n=10):
        nonlocal seed
        seed += 1
        return submit(
            fills_table(n, seed=seed, run_id=run_id), "fills", run_id=run_id, producer="quarantine-test", root=root
        )

    good.append(make("good-1"))
    for case, (corrupt, code) in BAD.items():
        r = make(f"bad-{case}")
        corrupt(root / "inbox" / r.job_id, ctx)
        bad[r.job_id] = (case, code)
        if len(bad) == 6:
            good.append(make("good-2"))  # good jobs between bad ones, in the same batch
    pending = make("pending")
    (root / "inbox" / pending.job_id / "COMMIT").unlink()  # still being written: not a rejection
    good.append(make("good-3"))

    before = {j: snapshot(root / "inbox" / j) for j in bad if BAD[bad[j][0]][0] is not job_folder_symlink}
    pending_before = snapshot(root / "inbox" / pending.job_id)
    outside_file_stat = os.stat(ctx["outside_file"])
    outside_file_hash = sha256(ctx["outside_file"])
    outside_dir_before = snapshot(ctx["outside_dir"])

    rep = ingest(root)

    # the report
    assert sorted(rep.accepted) == sorted(r.job_id for r in good)
    assert {r["job_id"]: r["code"] for r in rep.rejected} == {j: code for j, (_, code) in bad.items()}
    assert rep.duplicates == []
    assert all(r.get("message") for r in rep.rejected)

    # the quarantine: one folder per bad job, reason.json with the stable code, every byte kept
    assert sorted(os.listdir(root / "rejected")) == sorted(bad)
    for job_id, (case, code) in bad.items():
        q = root / "rejected" / job_id
        reason = json.loads((q / "reason.json").read_text())
        assert reason["code"] == code, case
        assert reason["job_id"] == job_id, case
        assert reason["message"], case
        assert "field" in reason, case
        assert sorted(os.listdir(q)) == ["payload", "reason.json"], case  # the reason beside the payload, never inside
        if case == "job_folder_symlink":
            assert os.readlink(q / "payload") == str(ctx["outside_dir"])
        else:
            assert snapshot(q / "payload") == before[job_id], case
    assert json.loads(
        (root / "rejected" / next(j for j, c in bad.items() if c[0] == "kind_invalid") / "reason.json").read_text()
    )["field"].endswith("kind")

    # nothing outside the root was touched
    assert ctx["outside_file"].is_file() and not ctx["outside_file"].is_symlink()
    assert sha256(ctx["outside_file"]) == outside_file_hash
    assert os.stat(ctx["outside_file"]).st_mtime_ns == outside_file_stat.st_mtime_ns
    assert snapshot(ctx["outside_dir"]) == outside_dir_before

    # the job without COMMIT waits in the inbox, untouched
    assert sorted(os.listdir(root / "inbox")) == sorted([".tmp", pending.job_id])
    assert snapshot(root / "inbox" / pending.job_id) == pending_before

    with catalog(root) as con:
        rows = con.execute("SELECT job_id, code, path, status FROM catalog.rejections").fetchall()
        assert sorted(rows) == sorted((j, code, f"rejected/{j}", "rejected") for j, (_, code) in bad.items())
        # the rejection row carries the run of a job whose manifest is still readable
        cm = next(j for j, c in bad.items() if c[0] == "checksum_mismatch")
        assert (
            con.execute("SELECT run_id FROM catalog.rejections WHERE job_id = ?", [cm]).fetchone()[0]
            == "bad-checksum_mismatch"
        )
        assert sorted(r[0] for r in con.execute("SELECT job_id FROM catalog.jobs").fetchall()) == sorted(
            r.job_id for r in good
        )
        assert con.execute("SELECT DISTINCT _run_id FROM bus.fills ORDER BY 1").fetchall() == [
            ("good-1",),
            ("good-2",),
            ("good-3",),
        ]
        assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == 30
        # the hostile kind never became a view, nor anything else
        assert con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'bus'").fetchall() == [("fills",)]
        assert con.execute("SELECT kind FROM catalog.kinds").fetchall() == [("fills",)]

    # running ingest again over the same state changes nothing
    again = ingest(root)
    assert again.accepted == [] and again.rejected == [] and again.duplicates == []
    assert sorted(os.listdir(root / "rejected")) == sorted(bad)
    with catalog(root) as con:
        assert con.execute("SELECT count(*) FROM catalog.rejections").fetchone()[0] == len(bad)

    # once its COMMIT lands, the pending job is ingested like any other
    d = root / "inbox" / pending.job_id
    (d / "COMMIT").write_text("sha256:" + hashlib.sha256((d / "manifest.json").read_bytes()).hexdigest())
    assert ingest(root).accepted == [pending.job_id]


# --- jobs that pass validation must not wedge the writer --------------------------------------------


@pytest.mark.parametrize("column", ["_bus_file", "_BUS_FILE"])
def test_column_named_like_a_view_internal_does_not_wedge_ingest(root, column):
    """A producer column may collide with a name the bus uses internally to build bus.<kind>. Whatever
    the bus decides for that job (accept or reject), the other jobs of the batch must be accepted and
    ingest must keep working."""
    good = submit(fills_table(5, seed=1), "fills", run_id="good", root=root)
    with pytest.raises(SchemaMismatch, match=f"column '{column}' is reserved"):  # refused at submit
        submit(pa.table({"qty": [1, 2], column: ["a", "b"]}), "fills", run_id="odd", root=root)
    # a producer in another language writes it anyway: the job is quarantined at ingest
    odd = submit(pa.table({"qty": [1, 2]}), "fills", run_id="odd", root=root)
    table = pa.table({"qty": [1, 2], column: ["a", "b"]})
    pq.write_table(table, odd.path / "fills.parquet")
    m = restate_file(odd.path, read_manifest(odd.path))
    m["artifacts"][0]["schema"] = {
        "fields": [
            {"name": f.name, "type": str(f.type), "nullable": f.nullable}
            for f in pq.read_schema(odd.path / "fills.parquet")
        ]
    }
    write_manifest(odd.path, m)

    rep = ingest(root)
    assert good.job_id in rep.accepted
    assert [(r["job_id"], r["code"]) for r in rep.rejected] == [(odd.job_id, "reserved_column")]
    again = ingest(root)
    assert again.accepted == [] and again.rejected == []
    with catalog(root) as con:
        assert con.execute("SELECT count(*) FROM bus.fills WHERE _job_id = ?", [good.job_id]).fetchone()[0] == 5


@pytest.mark.parametrize("contract", [None, '[columns]\nqty = "int64"\n'], ids=["no_contract", "contract_on_qty"])
def test_incompatible_column_type_does_not_break_the_kind_for_everyone(root, contract):
    """A later job whose column has a type that cannot be unified with the same column of earlier jobs
    (int64 vs list<int64>) must not leave bus.fills unreadable: either it is refused, or the view still
    reads every accepted job. With a contract, the column is one the contract does not name (new nullable
    columns are allowed by default)."""
    if contract:
        (root / "contracts").mkdir(parents=True)
        (root / "contracts" / "fills.toml").write_text(contract)
    first = submit(
        pa.table({"qty": [1, 2, 3], "x": pa.array([1, 2, 3], pa.int64())}), "fills", run_id="first", root=root
    )
    assert ingest(root).accepted == [first.job_id]
    later = submit(
        pa.table({"qty": [4, 5], "x": pa.array([[1], [2, 3]], pa.list_(pa.int64()))}),
        "fills",
        run_id="later",
        root=root,
    )
    rep = ingest(root)
    assert later.job_id in rep.accepted or [r["job_id"] for r in rep.rejected] == [later.job_id]
    with catalog(root) as con:
        rows = con.execute("SELECT _run_id, count(*) FROM bus.fills GROUP BY ALL ORDER BY 1").fetchall()
        assert ("first", 3) in rows
        con.execute("SELECT * FROM bus.fills").fetchall()
