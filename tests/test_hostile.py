"""Hostile jobs: each is quarantined with its precise reason code while the good jobs beside it are
ingested; nothing outside the bus root is read, written, moved or deleted (symlinks are never followed);
the catalog stays intact and queryable. Plus a hypothesis fuzz of `read_manifest`/`validate_job`.

Outside the root lives a folder of sentinels — a valid Parquet file, a text file, a complete valid job,
a valid manifest and COMMIT — that hostile jobs point at with symlinks and `../` names. When mount is
permitted it is a tmpfs mounted `strictatime`, so even a read shows up (atime); otherwise contents,
sizes, mtimes, inodes and the listing are compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_helpers import Sentinels, _sh, can_mount, doctor_problems, run, writer_tables

from artifact_bus import catalog, submit
from artifact_bus.core import new_job_id
from artifact_bus.protocol import Rejection, read_manifest, validate_job
from artifact_bus.testing import fills_table

INGEST = """
import json, sys
from artifact_bus import ingest
r = ingest(sys.argv[1])
print(json.dumps({"accepted": r.accepted, "rejected": r.rejected, "duplicates": r.duplicates}))
"""


# --- editing jobs on disk ------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_of(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_bytes())


def rewrite(d: Path, m: dict | None = None, *, raw: bytes | None = None, commit: bool = True) -> None:
    "Replace manifest.json (and, with `commit`, a COMMIT that matches it: the corruption passes the commit check)."
    raw = json.dumps(m, indent=1).encode() if raw is None else raw
    (d / "manifest.json").unlink(missing_ok=True)
    (d / "manifest.json").write_bytes(raw)
    if commit:
        (d / "COMMIT").unlink(missing_ok=True)
        (d / "COMMIT").write_text(sha(raw))


def restate(m: dict, data: bytes, rows: int | None = None, schema: dict | None = None, i: int = 0) -> dict:
    "Make artifact `i` of manifest `m` describe `data` (bytes, checksum, and optionally rows/schema)."
    a = m["artifacts"][i]
    a["bytes"], a["checksum"] = len(data), sha(data)
    if rows is not None:
        a["rows"] = rows
    if schema is not None:
        a["schema"] = schema
    return m


def new_job(root: Path, seed: int, rows: int = 20) -> Path:
    return Path(
        submit(fills_table(rows, seed=seed), "fills", run_id=f"hostile-{seed}", producer="hostile", root=root).path
    )


# --- the hostile cases: each makes one inbox entry and returns its name ----------------------------------


def manifest_missing(root, ctx):
    d = new_job(root, 1)
    (d / "manifest.json").unlink()
    return d.name


def invalid_json(root, ctx):
    d = new_job(root, 2)
    rewrite(d, raw=b'{"protocol": 1, "job_id": "')
    return d.name


def protocol_2(root, ctx):
    d = new_job(root, 3)
    m = manifest_of(d)
    m["protocol"] = 2
    rewrite(d, m)
    return d.name


def rows_as_string(root, ctx):
    d = new_job(root, 4)
    m = manifest_of(d)
    m["artifacts"][0]["rows"] = "20"
    rewrite(d, m)
    return d.name


def producer_as_number(root, ctx):
    d = new_job(root, 5)
    m = manifest_of(d)
    m["producer"] = 42
    rewrite(d, m)
    return d.name


def _file_name(seed, name_for):
    def case(root, ctx):
        d = new_job(root, seed)
        m = manifest_of(d)
        secret = ctx["outside"] / "secret.parquet"
        data = secret.read_bytes()  # set up before the sentinels are frozen
        m["artifacts"][0]["file"] = name_for(d, ctx)
        restate(m, data, rows=7)  # everything consistent with the outside file: only the name is wrong
        rewrite(d, m)
        return d.name

    return case


slash_name = _file_name(6, lambda d, ctx: "sub/fills.parquet")
dotdot_name = _file_name(7, lambda d, ctx: "../../outside/secret.parquet")
absolute_name = _file_name(8, lambda d, ctx: str(ctx["outside"] / "secret.parquet"))
nul_name = _file_name(9, lambda d, ctx: "fills\u0000.parquet")
dotdot_inside_name = _file_name(10, lambda d, ctx: "a..b.parquet")


def symlink_file_outside(root, ctx):
    d = new_job(root, 11)
    secret = ctx["outside"] / "secret.parquet"
    m = restate(manifest_of(d), secret.read_bytes(), rows=7)
    (d / "fills.parquet").unlink()
    (d / "fills.parquet").symlink_to(secret)
    rewrite(d, m)
    return d.name


def symlink_job_folder_outside(root, ctx):
    "A job folder that is a symlink to a complete, valid job outside the root, named with its job id."
    target = ctx["outside_job"]
    (root / "inbox" / target.name).symlink_to(target, target_is_directory=True)
    return target.name


def symlink_non_job_name_outside(root, ctx):
    (root / "inbox" / "not-a-job").symlink_to(ctx["outside_job"], target_is_directory=True)
    return "not-a-job"


def symlink_to_other_jobs_file(root, ctx):
    other = ctx["good"][0]
    d = new_job(root, 12)
    src = root / "inbox" / other / "fills.parquet"
    m = restate(manifest_of(d), src.read_bytes(), rows=ctx["good_rows"][0])
    (d / "fills.parquet").unlink()
    (d / "fills.parquet").symlink_to(Path("..") / other / "fills.parquet")
    rewrite(d, m)
    return d.name


def manifest_symlink_outside(root, ctx):
    d = new_job(root, 13)
    copy = ctx["outside"] / f"manifest-{d.name}.json"
    copy.write_bytes((d / "manifest.json").read_bytes())  # a valid manifest, COMMIT matches it
    (d / "manifest.json").unlink()
    (d / "manifest.json").symlink_to(copy)
    return d.name


def commit_symlink_outside(root, ctx):
    d = new_job(root, 14)
    copy = ctx["outside"] / f"COMMIT-{d.name}"
    copy.write_bytes((d / "COMMIT").read_bytes())
    (d / "COMMIT").unlink()
    (d / "COMMIT").symlink_to(copy)
    return d.name


def file_missing(root, ctx):
    d = new_job(root, 15)
    (d / "fills.parquet").unlink()
    return d.name


def file_unlisted(root, ctx):
    d = new_job(root, 16)
    (d / "notes.txt").write_text("not in the manifest")
    return d.name


def checksum_mismatch(root, ctx):
    d = new_job(root, 17)
    f = d / "fills.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    return d.name


def size_mismatch(root, ctx):
    d = new_job(root, 18)
    with open(d / "fills.parquet", "ab") as f:
        f.write(b"\0" * 16)
    return d.name


def truncated_parquet(root, ctx):
    d = new_job(root, 19)
    f = d / "fills.parquet"
    data = f.read_bytes()[: f.stat().st_size // 2]
    f.write_bytes(data)
    rewrite(d, restate(manifest_of(d), data))
    return d.name


def not_parquet(root, ctx):
    d = new_job(root, 20)
    data = b"definitely not parquet\n" * 64
    (d / "fills.parquet").write_bytes(data)
    rewrite(d, restate(manifest_of(d), data))
    return d.name


def fifo_artifact(root, ctx):
    "A FIFO where the Parquet file should be: opening it would hang the writer."
    d = new_job(root, 21)
    (d / "fills.parquet").unlink()
    os.mkfifo(d / "fills.parquet")
    return d.name


def row_count_mismatch(root, ctx):
    d = new_job(root, 22)
    m = manifest_of(d)
    m["artifacts"][0]["rows"] += 1
    rewrite(d, m)
    return d.name


def schema_mismatch(root, ctx):
    d = new_job(root, 23)
    m = manifest_of(d)
    f = next(f for f in m["artifacts"][0]["schema"]["fields"] if f["name"] == "qty")
    f["type"] = "int64"
    rewrite(d, m)
    return d.name


def reserved_column(root, ctx):
    d = new_job(root, 24)
    t = fills_table(5, seed=24).append_column("_job_id", pa.array(["01ARZ3NDEKTSV4RRFFQ69G5FAV"] * 5))
    pq.write_table(t, d / "fills.parquet")
    data = (d / "fills.parquet").read_bytes()
    schema = {"fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in t.schema]}
    rewrite(d, restate(manifest_of(d), data, rows=5, schema=schema))
    return d.name


def _kind(seed, kind):
    def case(root, ctx):
        d = new_job(root, seed)
        m = manifest_of(d)
        m["artifacts"][0]["kind"] = kind
        rewrite(d, m)
        return d.name

    return case


kind_sql_injection = _kind(25, "fills; DROP TABLE catalog.jobs; --")
kind_quote_injection = _kind(26, 'x" OR 1=1')
kind_upper = _kind(27, "Fills")


def manifest_too_large(root, ctx):
    d = new_job(root, 28)
    m = manifest_of(d)
    m["meta"] = {"pad": "x" * (1 << 20)}
    rewrite(d, m)
    return d.name


def commit_mismatch(root, ctx):
    d = new_job(root, 29)
    m = manifest_of(d)
    m["run_id"] = "edited-after-commit"
    rewrite(d, m, commit=False)
    return d.name


def job_id_mismatch(root, ctx):
    d = new_job(root, 30)
    m = manifest_of(d)
    m["job_id"] = new_job_id()
    rewrite(d, m)
    return d.name


def stray_file(root, ctx):
    (root / "inbox" / "README.txt").write_text("a file dropped into the inbox")
    return "README.txt"


CASES = [  # (case, the exact reason code)
    (manifest_missing, "manifest_missing"),
    (invalid_json, "manifest_invalid_json"),
    (protocol_2, "protocol_version"),
    (rows_as_string, "manifest_schema"),
    (producer_as_number, "manifest_schema"),
    (slash_name, "unsafe_name"),
    (dotdot_name, "unsafe_name"),
    (absolute_name, "unsafe_name"),
    (nul_name, "unsafe_name"),
    (dotdot_inside_name, "unsafe_name"),
    (symlink_file_outside, "unsafe_entry"),
    (symlink_job_folder_outside, "unsafe_entry"),
    (symlink_non_job_name_outside, "job_id_invalid"),
    (symlink_to_other_jobs_file, "unsafe_entry"),
    (manifest_symlink_outside, "unsafe_entry"),
    (commit_symlink_outside, "commit_mismatch"),
    (file_missing, "file_missing"),
    (file_unlisted, "file_unlisted"),
    (checksum_mismatch, "checksum_mismatch"),
    (size_mismatch, "size_mismatch"),
    (truncated_parquet, "not_parquet"),
    (not_parquet, "not_parquet"),
    (fifo_artifact, "unsafe_entry"),
    (row_count_mismatch, "row_count_mismatch"),
    (schema_mismatch, "schema_mismatch"),
    (reserved_column, "reserved_column"),
    (kind_sql_injection, "kind_invalid"),
    (kind_quote_injection, "kind_invalid"),
    (kind_upper, "kind_invalid"),
    (manifest_too_large, "manifest_too_large"),
    (commit_mismatch, "commit_mismatch"),
    (job_id_mismatch, "job_id_mismatch"),
    (stray_file, "job_id_invalid"),
]


@pytest.fixture
def outside(tmp_path):
    "A folder outside the root: a strictatime tmpfs when mount is permitted (reads become visible)."
    d = tmp_path / "outside"
    d.mkdir()
    mounted = False
    if can_mount() is None:
        mounted = _sh("mount", "-t", "tmpfs", "-o", "size=32m,strictatime", "tmpfs", str(d)).returncode == 0
    try:
        yield d, mounted
    finally:
        if mounted and _sh("umount", str(d)).returncode != 0:
            _sh("umount", "-l", str(d))


def _outside_job(folder: Path) -> Path:
    "A complete, valid, committed job outside the root (made in a scratch bus, then moved out)."
    scratch = Path(tempfile.mkdtemp(dir=folder.parent)) / "bus"
    r = submit(fills_table(9, seed=77), "fills", root=scratch)
    dest = folder / r.job_id
    shutil.copytree(r.path, dest)
    shutil.rmtree(scratch.parent)
    return dest


def test_hostile_jobs_are_quarantined_and_nothing_outside_is_touched(tmp_path, root, outside):
    out_dir, strict = outside
    pq.write_table(fills_table(7, seed=7), out_dir / "secret.parquet")
    (out_dir / "secret.txt").write_text("outside the bus: never to be read\n")
    ctx = {"outside": out_dir, "outside_job": _outside_job(out_dir)}
    ctx["good_rows"] = [11, 12, 13]
    ctx["good"] = [
        submit(fills_table(n, seed=100 + n), "fills", run_id="good", root=root).job_id for n in ctx["good_rows"]
    ]
    expected = {}
    for case, code in CASES:
        name = case(root, ctx)
        assert name not in expected
        expected[name] = (case.__name__ if hasattr(case, "__name__") else str(case), code)
    # a folder that was never committed (no COMMIT) is neither ingested nor rejected: it waits
    pending = root / "inbox" / new_job_id()
    pending.mkdir()
    (pending / "fills.parquet").write_bytes(b"half-written")
    good_late = submit(fills_table(14, seed=114), "fills", run_id="good", root=root).job_id
    good = ctx["good"] + [good_late]

    sentinels = Sentinels(out_dir, atime_reliable=strict)
    sentinels.freeze()
    rep = json.loads(run(INGEST, root, cwd=tmp_path).stdout)
    sentinels.assert_untouched()

    got = {r["job_id"]: r["code"] for r in rep["rejected"]}
    wrong = {f"{expected[n][0]} ({n})": (code, got.get(n)) for n, (_, code) in expected.items() if got.get(n) != code}
    assert not wrong, f"case: (expected code, got code): {wrong}"
    assert set(got) == set(expected), f"rejected but not hostile: {set(got) - set(expected)}"
    assert sorted(rep["accepted"]) == sorted(good) and rep["duplicates"] == []
    assert pending.is_dir() and not (root / "rejected" / pending.name).exists()

    # quarantined with every byte kept, and symlinks kept as symlinks (never followed, never copied)
    for name, (_, code) in expected.items():
        q = root / "rejected" / name
        assert json.loads((q / "reason.json").read_text())["code"] == code
    assert (root / "rejected" / ctx["outside_job"].name / "payload").is_symlink()
    assert ctx["outside_job"].is_dir() and (ctx["outside_job"] / "COMMIT").is_file()

    # the duplicate job id: a folder re-created under an id that was already ingested
    stored = next((root / "store").glob(f"*/{good[0]}"))
    shutil.copytree(stored, root / "inbox" / good[0])
    sentinels.freeze()
    rep2 = json.loads(run(INGEST, root, cwd=tmp_path).stdout)
    sentinels.assert_untouched()
    assert [(r["job_id"], r["code"]) for r in rep2["rejected"]] == [(good[0], "duplicate_job_id")]
    assert rep2["accepted"] == []

    # the catalog: exactly the good jobs, every table queryable, nothing dropped or injected
    with catalog(root) as con:
        assert sorted(r[0] for r in con.execute("SELECT job_id FROM catalog.jobs").fetchall()) == sorted(good)
        assert con.execute("SELECT count(*), sum(rows) FROM catalog.artifacts").fetchone() == (4, 11 + 12 + 13 + 14)
        assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == 11 + 12 + 13 + 14
        rej = dict(
            con.execute(
                "SELECT job_id, code FROM catalog.rejections WHERE ingest_run = "
                "(SELECT min(ingest_run) FROM catalog.rejections)"
            ).fetchall()
        )
        assert rej == {n: code for n, (_, code) in expected.items()}
        assert con.execute("SELECT count(*) FROM catalog.rejections WHERE code = 'duplicate_job_id'").fetchone()[0] == 1
        for t in ("jobs", "artifacts", "rejections", "ingest_runs", "kinds"):
            con.execute(f"SELECT count(*) FROM catalog.{t}").fetchone()
        views = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'bus'"
            ).fetchall()
        }
        assert views == {"fills"}
    tables = writer_tables(root)
    assert sorted(r[0] for r in tables["jobs"]) == sorted(good)
    assert doctor_problems(root) == []


def test_deeply_nested_manifest_is_quarantined_not_a_poison_pill(tmp_path, root):
    """A manifest (well under 1 MiB, COMMIT matching) whose JSON nests 100 000 levels deep must be
    rejected like any bad manifest — not crash the writer and stall the good jobs of its batch forever."""
    good = submit(fills_table(5, seed=1), "fills", root=root).job_id
    d = new_job(root, 2)
    raw = json.dumps(manifest_of(d)).encode()
    raw = raw[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    rewrite(d, raw=raw)
    p = run(INGEST, root, cwd=tmp_path, check=False)
    assert p.returncode == 0, (
        f"the writer crashed on one hostile manifest (and will again on every run: the good "
        f"job {good} of the same batch is stuck):\n{p.stderr.strip().splitlines()[-1]}"
    )
    rep = json.loads(p.stdout)
    assert rep["accepted"] == [good]
    assert [r["job_id"] for r in rep["rejected"]] == [d.name]


# --- fuzz: read_manifest / validate_job never fail any other way, never read outside the job folder -----

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reliability_helpers import loops  # noqa: E402

FUZZ_EXAMPLES = loops("ARTIFACT_BUS_FUZZ_EXAMPLES", 1000, 20000)

_recording: list | None = None
LIBRARY_DIR = os.path.dirname(os.path.abspath(__import__("artifact_bus").__file__))  # its own package data


def _audit(event, args):
    "Record every path the process opens or lists while `_recording` is set (sys.addaudithook, PEP 578)."
    if _recording is not None and event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
        if not isinstance(args[0], int):  # an fd: already opened, and recorded, by path
            _recording.append((event, os.fsdecode(args[0])))


sys.addaudithook(_audit)

SPECIAL_NAMES = [
    "../outside.parquet",
    "../../outside.parquet",
    "/etc/passwd",
    "/tmp/outside.parquet",
    "a/b.parquet",
    "x\x00.parquet",
    "..",
    ".",
    "",
    "manifest.json",
    "COMMIT",
    "fills.parquet",
    "sub/../fills.parquet",
    "outside.parquet",
    "...parquet",
    "a..parquet",
    "-x.parquet",
    ".hidden.parquet",
    "fills.parquet/",
    "fills.PARQUET",
    "\uff46ills.parquet",
    "fills.parquet\n",
    "C:\\x.parquet",
    "~/x.parquet",
]
LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=16)
    | st.sampled_from(SPECIAL_NAMES)
)
JSON = st.recursive(
    LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)
PATHS = [
    ("protocol",),
    ("job_id",),
    ("run_id",),
    ("producer",),
    ("submitted_at",),
    ("key",),
    ("meta",),
    ("lineage",),
    ("lineage", "pid"),
    ("lineage", "packages"),
    ("artifacts",),
    ("artifacts", 0),
    ("artifacts", 0, "name"),
    ("artifacts", 0, "kind"),
    ("artifacts", 0, "file"),
    ("artifacts", 0, "rows"),
    ("artifacts", 0, "bytes"),
    ("artifacts", 0, "checksum"),
    ("artifacts", 0, "schema"),
    ("artifacts", 0, "schema", "fields"),
    ("artifacts", 0, "schema", "fields", 0),
    ("artifacts", 0, "schema", "fields", 0, "name"),
    ("artifacts", 0, "schema", "fields", 0, "type"),
    ("artifacts", 0, "schema", "fields", 0, "nullable"),
    ("artifacts", 1),
    ("artifacts", 1, "file"),
    ("artifacts", 1, "name"),
]
MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), JSON),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("add"), st.sampled_from([p for p in PATHS if len(p) <= 3]), st.tuples(st.text(max_size=8), JSON)),
)


def _apply(m, mutation):
    op, path, value = mutation
    parent = m
    try:
        for p in path[:-1]:
            parent = parent[p]
        if op == "set":
            parent[path[-1]] = value
        elif op == "delete":
            del parent[path[-1]]
        else:
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[value[0]] = value[1]
            elif isinstance(target, list):
                target.append(value[1])
    except (KeyError, IndexError, TypeError):
        pass  # the path does not exist in this (already mutated) manifest: no-op
    return m


@pytest.fixture(scope="module")
def fuzz_template(tmp_path_factory):
    "A valid two-artifact job, as bytes, to mutate."
    base = tmp_path_factory.mktemp("fuzz-template")
    from artifact_bus import job

    with job(root=base / "bus", run_id="fuzz") as j:
        j.add("fills", fills_table(6, seed=1))
        j.add("events", fills_table(3, seed=2).select(["ts", "symbol"]))
    d = Path(j.receipt.path)
    files = {p.name: p.read_bytes() for p in d.iterdir() if p.suffix == ".parquet"}
    validate_job(d)
    pq.ParquetFile(d / "fills.parquet").metadata  # warm the lazy imports before recording
    return {"manifest": manifest_of(d), "files": files, "job_id": d.name, "base": tmp_path_factory.mktemp("fuzz")}


def _example_manifest(t, data):
    kind = data.draw(st.sampled_from(["mutated", "mutated", "mutated", "raw", "truncated", "flipped"]), label="kind")
    m = json.loads(json.dumps(t["manifest"]))
    if kind == "mutated":
        for mut in data.draw(st.lists(MUTATION, min_size=1, max_size=4), label="mutations"):
            m = _apply(m, mut)
        return json.dumps(m, indent=data.draw(st.sampled_from([None, 1]))).encode()
    valid = json.dumps(m).encode()
    if kind == "raw":
        return data.draw(st.binary(max_size=2000), label="raw")
    if kind == "truncated":
        return valid[: data.draw(st.integers(0, len(valid)), label="cut")]
    pos = data.draw(st.integers(0, len(valid) - 1), label="pos")
    return valid[:pos] + bytes([data.draw(st.integers(0, 255), label="byte")]) + valid[pos + 1 :]


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_validate_job_rejects_or_returns_never_crashes_never_reads_outside(fuzz_template, data):
    global _recording
    t = fuzz_template
    raw = _example_manifest(t, data)
    files = dict(t["files"])
    if data.draw(st.booleans(), label="mutate parquet"):  # corrupt a Parquet file, keep the manifest consistent
        name = data.draw(st.sampled_from(sorted(files)), label="file")
        b = bytearray(files[name])
        for pos, val in data.draw(
            st.lists(st.tuples(st.integers(0, len(b) - 1), st.integers(0, 255)), min_size=1, max_size=8)
        ):
            b[pos] = val
        files[name] = bytes(b)
        try:
            m = json.loads(raw)
            for a in m["artifacts"]:
                if a["file"] == name:
                    a["bytes"], a["checksum"] = len(b), sha(bytes(b))
            raw = json.dumps(m).encode()
        except Exception:
            pass
    commit = data.draw(st.sampled_from(["match", "match", "match", "other", "missing", "binary"]), label="commit")
    folder = (
        t["job_id"] if data.draw(st.integers(0, 9)) else data.draw(st.sampled_from([new_job_id(), "not-a-job", "..x"]))
    )

    case = Path(tempfile.mkdtemp(dir=t["base"]))
    try:
        for n, b in t["files"].items():  # tempting targets just outside the job folder
            (case / n).write_bytes(b)
        (case / "outside.parquet").write_bytes(t["files"]["fills.parquet"])
        d = case / folder
        d.mkdir()
        for n, b in files.items():
            (d / n).write_bytes(b)
        (d / "manifest.json").write_bytes(raw)
        if commit == "match":
            (d / "COMMIT").write_text(sha(raw))
        elif commit == "other":
            (d / "COMMIT").write_text(sha(raw + b" "))
        elif commit == "binary":
            (d / "COMMIT").write_bytes(os.urandom(40))

        for fn in (read_manifest, validate_job):
            _recording = []
            try:
                got = fn(d)
            except Rejection as r:
                assert isinstance(r.code, str) and r.code.replace("_", "").isalpha(), r.code
            else:
                m = got[0] if fn is read_manifest else got
                assert m == json.loads(raw)
                if fn is validate_job:
                    assert all((d / a["file"]).resolve().parent == d.resolve() for a in m["artifacts"])
            finally:
                seen, _recording = _recording, None
            jd = os.path.abspath(d)
            lib = tuple(os.path.abspath(p) + os.sep for p in {sys.prefix, sys.base_prefix, LIBRARY_DIR})
            outside = [
                (e, p)
                for e, p in seen
                if os.path.commonpath([os.path.abspath(p), jd]) != jd and not os.path.abspath(p).startswith(lib)
            ]
            assert not outside, f"{fn.__name__} opened or listed outside the job folder: {outside}"
    finally:
        _recording = None
        shutil.rmtree(case)
