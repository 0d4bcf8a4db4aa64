"""The job protocol as a published contract: the golden vectors under protocol/vectors and the exported JSON Schema.

Every producer implementation is tested against the same vectors; here the Python writer is: validate_job
accepts every valid job and rejects every invalid one with the code its expected.json names, and one ingest of
all of them together accepts exactly the valid ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from artifact_bus import catalog, ingest
from artifact_bus.protocol import Rejection, manifest_schema, validate_job

REPO = Path(__file__).resolve().parent.parent
PROTOCOL_DIR = REPO / "protocol"
VECTORS = PROTOCOL_DIR / "vectors"


def vectors(group: str) -> list[Path]:
    return sorted(p for p in (VECTORS / group).iterdir() if p.is_dir())


def expected(vector: Path) -> dict:
    return json.loads((vector / "expected.json").read_text())


def copy_job(vector: Path, dest_parent: Path) -> Path:
    "Copy the vector's job folder (under its own name) into `dest_parent`."
    name = expected(vector)["job"]
    dest = dest_parent / name
    shutil.copytree(vector / name, dest, symlinks=True)
    return dest


def test_there_are_vectors_of_both_kinds():
    assert len(vectors("valid")) >= 5 and len(vectors("invalid")) >= 20
    for v in vectors("valid") + vectors("invalid"):
        e = expected(v)
        assert sorted(p.name for p in v.iterdir()) == sorted(["expected.json", e["job"]]), v


def test_exported_schema_is_the_packaged_one():
    "protocol/manifest.schema.json and the TypeScript package's copy are byte-for-byte the schema the package ships."
    packaged = (Path(__import__("artifact_bus").__file__).parent / "manifest.schema.json").read_bytes()
    assert (PROTOCOL_DIR / "manifest.schema.json").read_bytes() == packaged
    assert (REPO / "clients" / "typescript" / "manifest.schema.json").read_bytes() == packaged
    assert json.loads(packaged) == manifest_schema()


def test_protocol_document_lists_every_rejection_code():
    "PROTOCOL.md documents each code the vectors use, and the codes only ingest gives."
    doc = (PROTOCOL_DIR / "PROTOCOL.md").read_text()
    codes = {expected(v)["code"] for v in vectors("invalid")}
    codes |= {"never_committed", "duplicate_job_id", "contract", "schema_conflict"}
    missing = sorted(c for c in codes if f"`{c}`" not in doc)
    assert not missing, f"PROTOCOL.md does not document {missing}"


@pytest.mark.parametrize("vector", vectors("valid"), ids=lambda p: p.name)
def test_valid_vector_passes_validation(vector, tmp_path):
    job_dir = copy_job(vector, tmp_path)
    m = validate_job(job_dir)
    assert m["job_id"] == job_dir.name
    assert {a["name"]: a["rows"] for a in m["artifacts"]} == expected(vector)["artifacts"]


@pytest.mark.parametrize("vector", vectors("invalid"), ids=lambda p: p.name)
def test_invalid_vector_is_rejected_with_its_code(vector, tmp_path):
    job_dir = copy_job(vector, tmp_path)
    with pytest.raises(Rejection) as info:
        validate_job(job_dir)
    assert info.value.code == expected(vector)["code"], info.value


def test_one_ingest_of_all_vectors_accepts_exactly_the_valid_ones(root):
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    for v in vectors("valid") + vectors("invalid"):
        copy_job(v, inbox)
    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted(expected(v)["job"] for v in vectors("valid"))
    assert report.duplicates == []
    got = {r["job_id"]: r["code"] for r in report.rejected}
    want = {expected(v)["job"]: expected(v)["code"] for v in vectors("invalid") if expected(v)["ingest"] == "rejected"}
    assert got == want
    pending = sorted(expected(v)["job"] for v in vectors("invalid") if expected(v)["ingest"] == "pending")
    assert sorted(p.name for p in inbox.iterdir() if not p.name.startswith(".")) == pending
    for v in vectors("invalid"):
        e = expected(v)
        if e["ingest"] == "rejected":
            reason = json.loads((root / "rejected" / e["job"] / "reason.json").read_text())
            assert reason["code"] == e["code"]
    with catalog(root) as con:
        rows = dict(con.execute("SELECT kind, sum(rows)::BIGINT FROM catalog.artifacts GROUP BY kind").fetchall())
        assert rows == {"fills": 6, "positions": 2, "events": 8, "quotes": 3}
        assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == 6


def test_vectors_regenerate_identically(tmp_path):
    """make_vectors.py is deterministic and the committed vectors are its output (same names, manifests and
    expectations)."""
    out = tmp_path / "vectors"
    subprocess.run([sys.executable, str(PROTOCOL_DIR / "make_vectors.py"), str(out)], check=True, timeout=120)
    committed = sorted(p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert fresh == committed
    for rel in committed:
        if rel.endswith("expected.json"):
            assert (out / rel).read_bytes() == (VECTORS / rel).read_bytes(), rel
        elif rel.endswith("manifest.json") and "manifest-invalid-json" not in rel:
            a, b = json.loads((out / rel).read_bytes()), json.loads((VECTORS / rel).read_bytes())
            # Parquet bytes (and so sizes and checksums) depend on the pyarrow version that wrote them
            for m in (a, b):
                for art in m.get("artifacts", []):
                    art.pop("bytes", None)
                    art.pop("checksum", None)
            assert a == b, rel
