"""Generate the golden test vectors of the job protocol v1 under protocol/vectors/.

    python protocol/make_vectors.py [OUT]        # default: protocol/vectors next to this script

Deterministic: fixed job ids, fixed timestamps, fixed lineage and fixed data, so regenerating gives the same
jobs (byte for byte with the same pyarrow version; Parquet footers name the writer's version).

Layout, one folder per vector:

    valid/<name>/expected.json          {"status": "accepted", "job": <folder>, "artifacts": {name: rows}, ...}
    valid/<name>/<job folder>/          manifest.json, COMMIT, <artifact>.parquet ...
    invalid/<name>/expected.json        {"code": <rejection code>, "job": <folder>, "ingest": "rejected" | "pending", ...}
    invalid/<name>/<job folder>/        a job that breaks one rule

Every producer implementation is tested against them: its manifests look like the valid ones, and a validator
(if it has one) accepts the valid jobs and rejects each invalid one with the expected code.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SUBMITTED_AT = "2024-01-02T14:30:00.000000+00:00"
LINEAGE = {"host": "vector-host", "user": "vector", "pid": 1, "language": "python", "python": "3.11.0",
           "packages": {}, "git_commit": None, "git_dirty": None, "cwd": None, "notebook": None, "parameters": None}


def job_id(n: int) -> str:
    "A fixed, valid ULID: the time part of 2024-01-02, then a readable counter."
    return f"01HK4AJ600VECT0R{n:010d}"


UUID7 = "018cca0a-1c40-7000-8000-00000000c0de"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def schema_json(schema: pa.Schema) -> dict:
    return {"fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]}


# ---- data

TS = [1704205800123456, 1704205860000000, 1704207600000001]  # microseconds since the epoch


def fills(n: int = 3) -> pa.Table:
    return pa.table({
        "ts": pa.array(TS[:n], pa.timestamp("us")),
        "symbol": pa.array(["AAA", None, "CCC"][:n], pa.string()),
        "side": pa.array([1, -1, 1][:n], pa.int8()),
        "qty": pa.array([10, -20, 3_000_000_000_000][:n], pa.int64()),
        "price": pa.array([101.25, None, 99.5][:n], pa.float64()),
        "filled": pa.array([True, False, None][:n], pa.bool_()),
    })


def positions() -> pa.Table:
    return pa.table({"symbol": pa.array(["AAA", "CCC"]), "qty": pa.array([10, 3_000_000_000_000], pa.int64()),
                     "as_of": pa.array(TS[2:] * 2, pa.timestamp("us"))})


def events() -> pa.Table:
    return pa.table({"ts": pa.array(TS[:2], pa.timestamp("us")), "event": ["start", "end"], "detail": [None, "3 fills"]})


def quotes() -> pa.Table:
    return pa.table({
        "ts": pa.array(TS, pa.timestamp("us", tz="UTC")),
        "symbol": pa.array(["AAA", "BBB", "AAA"]).dictionary_encode(),
        "day": pa.array([19724, 19724, None], pa.date32()),
        "bid": pa.array([1.5, None, 2.5], pa.float32()),
        "size": pa.array([100, 200, None], pa.int32()),
    })


# ---- writing jobs

def write_job(folder: Path, jid: str, artifacts, *, manifest_edit=None, commit: str | bytes | None = "auto",
              raw_manifest: bytes | None = None, **fields) -> dict:
    "Write one job folder: Parquet files, manifest.json, COMMIT. Returns the manifest."
    folder.mkdir(parents=True)
    entries = []
    for name, kind, table in artifacts:
        file = f"{name}.parquet"
        pq.write_table(table, folder / file)
        data = (folder / file).read_bytes()
        entries.append({"name": name, "kind": kind, "file": file, "rows": table.num_rows, "bytes": len(data),
                        "checksum": sha(data), "schema": schema_json(pq.ParquetFile(folder / file).schema_arrow)})
    manifest = {"protocol": 1, "job_id": jid, "run_id": "sim-001", "producer": "vectors", "submitted_at": SUBMITTED_AT,
                "key": None, "meta": {}, "lineage": LINEAGE, "artifacts": entries}
    manifest.update(fields)
    if manifest_edit: manifest_edit(manifest)
    raw = raw_manifest if raw_manifest is not None else json.dumps(manifest, indent=1).encode()
    if raw is not False: (folder / "manifest.json").write_bytes(raw)
    if commit == "auto": commit = sha(raw if raw is not False else b"")
    if commit is not None: (folder / "COMMIT").write_bytes(commit.encode() if isinstance(commit, str) else commit)
    return manifest


def valid(out: Path, name: str, jid: str, artifacts, description: str, **fields) -> None:
    d = out / "valid" / name
    m = write_job(d / jid, jid, artifacts, **fields)
    (d / "expected.json").write_text(json.dumps({
        "status": "accepted", "job": jid, "description": description,
        "artifacts": {a["name"]: a["rows"] for a in m["artifacts"]}}, indent=1) + "\n")


def invalid(out: Path, name: str, code: str, description: str, *, folder: str | None = None, ingest: str = "rejected",
            after=None, artifacts=None, **kw) -> None:
    n = invalid.counter = getattr(invalid, "counter", 100) + 1
    jid = job_id(n)
    d = out / "invalid" / name
    job_dir = d / (folder or jid)
    write_job(job_dir, jid, artifacts or [("fills", "fills", fills())], **kw)
    if after: after(job_dir)
    (d / "expected.json").write_text(json.dumps({
        "code": code, "job": job_dir.name, "ingest": ingest, "description": description}, indent=1) + "\n")


def edit_artifact(key, value):
    def f(m): m["artifacts"][0][key] = value(m["artifacts"][0][key]) if callable(value) else value
    return f


def main(out: Path) -> None:
    if out.exists(): shutil.rmtree(out)
    invalid.counter = 100

    # ---- valid jobs: the writer accepts each of them
    valid(out, "single-artifact", job_id(1), [("fills", "fills", fills())],
          "One artifact: timestamp[us], string with a null, int8, int64 beyond 32 bits, double with a null, bool.")
    valid(out, "multi-artifact-uuid7", UUID7, [("fills", "fills", fills()), ("positions", "positions", positions()),
                                               ("events", "events", events())],
          "Three artifacts in one atomic job, a UUIDv7 job id, an idempotency key and meta.",
          key="sim-001/simulation", meta={"strategy": "mean-reversion", "seed": 1, "tags": ["a", "b"]})
    valid(out, "dictionary-timezone", job_id(2), [("quotes", "quotes", quotes())],
          "Types whose spelling matters: timestamp[us, tz=UTC], dictionary<values=string, indices=int32, ordered=0>, "
          "date32[day], float, int32.", submitted_at="2024-01-02T14:30:00Z")
    valid(out, "empty-artifact", job_id(3), [("fills", "fills", fills(0))], "An artifact of zero rows.")
    valid(out, "minimal-manifest", job_id(4), [("events", "events", events())],
          "Only the required manifest fields: no key, no meta, a null run_id, lineage with only a host.",
          manifest_edit=lambda m: [m.pop("key"), m.pop("meta"), m.update(run_id=None, lineage={"host": "vector-host"})])
    valid(out, "two-of-a-kind", job_id(5), [("events", "events", events()), ("events-2", "events", events())],
          "Two artifacts of the same kind, named <kind> and <kind>-2.")

    # ---- invalid jobs: the writer rejects each with the code in expected.json
    invalid(out, "job-id-invalid", "job_id_invalid", "The job folder's name is neither a ULID nor a UUIDv7.",
            folder="not-a-job-id")
    invalid(out, "manifest-missing", "manifest_missing", "COMMIT and the Parquet file, but no manifest.json.",
            raw_manifest=False, commit=sha(b"{}"))
    invalid(out, "manifest-too-large", "manifest_too_large", "manifest.json above 1 MiB (1048576 bytes) is rejected unread.",
            manifest_edit=lambda m: m["meta"].update(padding="x" * (1 << 20)))
    invalid(out, "commit-missing", "commit_missing",
            "No COMMIT: the job was never committed. The writer leaves such a folder in the inbox (a producer may "
            "still be writing it) and rejects it as never_committed once it is older than tmp_max_age.",
            ingest="pending", commit=None)
    invalid(out, "commit-mismatch", "commit_mismatch", "COMMIT does not hold the checksum of manifest.json.",
            commit="sha256:" + "0" * 64)
    invalid(out, "manifest-invalid-json", "manifest_invalid_json", "manifest.json is not JSON (COMMIT matches its bytes).",
            raw_manifest=b'{"protocol": 1, "job_id": ')
    invalid(out, "manifest-schema", "manifest_schema", "A required field (producer) is missing.",
            manifest_edit=lambda m: m.pop("producer"))
    invalid(out, "manifest-extra-field", "manifest_schema", "A field the schema does not know (additionalProperties is false).",
            manifest_edit=lambda m: m.update(priority="high"))
    invalid(out, "protocol-version", "protocol_version", "protocol 2: not a version this writer reads.",
            manifest_edit=lambda m: m.update(protocol=2))
    invalid(out, "kind-invalid", "kind_invalid", "A kind that is not a plain lower-case identifier.",
            manifest_edit=edit_artifact("kind", "Fills"))
    invalid(out, "unsafe-name", "unsafe_name", "A file name that leaves the job folder.",
            manifest_edit=edit_artifact("file", "../fills.parquet"))
    invalid(out, "job-id-mismatch", "job_id_mismatch", "The manifest's job_id is not the folder's name.",
            manifest_edit=lambda m: m.update(job_id=job_id(999)))
    invalid(out, "duplicate-name", "duplicate_name", "Two artifacts with the same name.",
            artifacts=[("fills", "fills", fills()), ("fills-2", "fills", fills())],
            manifest_edit=lambda m: m["artifacts"][1].update(name="fills"))
    invalid(out, "file-unlisted", "file_unlisted", "A file in the job folder that the manifest does not list.",
            after=lambda d: (d / "notes.txt").write_text("not listed\n"))
    invalid(out, "unsafe-entry", "unsafe_entry", "A folder inside the job folder: a job holds regular files only.",
            after=lambda d: ((d / "extra").mkdir(), (d / "extra" / "file.txt").write_text("x\n")))
    invalid(out, "file-missing", "file_missing", "The manifest lists a Parquet file that is not there.",
            after=lambda d: (d / "fills.parquet").unlink())
    invalid(out, "size-mismatch", "size_mismatch", "The manifest's bytes differ from the file's size.",
            manifest_edit=edit_artifact("bytes", lambda b: b + 1))
    invalid(out, "checksum-mismatch", "checksum_mismatch", "The manifest's checksum is not the file's sha256.",
            manifest_edit=edit_artifact("checksum", "sha256:" + "ab" * 32))
    invalid(out, "not-parquet", "not_parquet", "A listed file that is not Parquet (its size and checksum match).",
            **_not_parquet())
    invalid(out, "row-count-mismatch", "row_count_mismatch", "The manifest's rows differ from the Parquet footer's.",
            manifest_edit=edit_artifact("rows", lambda r: r + 1))
    invalid(out, "schema-mismatch", "schema_mismatch", "The manifest says int32 where the file holds int64.",
            manifest_edit=lambda m: m["artifacts"][0]["schema"]["fields"][3].update(type="int32"))
    invalid(out, "schema-nullability", "schema_mismatch", "The manifest says not null where the file's column is nullable.",
            manifest_edit=lambda m: m["artifacts"][0]["schema"]["fields"][1].update(nullable=False))
    invalid(out, "reserved-column", "reserved_column", "A column named like the bus's own view columns (_job_id).",
            artifacts=[("fills", "fills", fills().append_column("_job_id", pa.array(["x", "y", "z"])))])


def _not_parquet() -> dict:
    junk = b"PAR1 this is not a parquet file PAR1"
    def edit(m):
        a = m["artifacts"][0]
        a.update(bytes=len(junk), checksum=sha(junk))
    return {"manifest_edit": edit, "after": lambda d: (d / "fills.parquet").write_bytes(junk)}


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE / "vectors")
