"""Beyond one machine, against real servers: producers submit to object storage (SeaweedFS), the single
writer pulls and ingests their jobs and mirrors each batch into a DuckLake whose catalog is PostgreSQL,
and readers attach that lake read-only while all of this runs.

- Several producer processes, each with its own spool (as on separate machines), submit to an s3:// root;
  the writer pulls and ingests in a loop; reader processes attach the lake READ_ONLY throughout and must
  never error, and must only ever see whole batches (snapshot isolation). At the end every acknowledged
  job is cataloged exactly once, and each lake table equals `bus.<kind>` row for row (EXCEPT ALL both
  ways, `_job_id` and `_run_id` included); the lake has one snapshot per ingest batch, naming the batch's
  jobs, and reads each of them back by time travel.
- A producer whose object storage is down spools the job locally; `flush()` uploads it once it is back.
- A writer killed (SIGKILL) at random instants while pulling, and while mirroring: nothing lost, nothing
  duplicated, in the bus or in the lake.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pytest
from reliability_helpers import finish, kill, read_line, spawn
from servers import SeaweedFS, postgres, seaweedfs  # noqa: F401 (fixtures: they skip, or fail under SERVER_TESTS=required)

from artifact_bus import catalog, flush, ingest, lake, pull, submit, upload
from artifact_bus.catalog_db import writer_connection
from artifact_bus.core import load_config
from artifact_bus.submit import spool_dir, spooled_jobs

pytestmark = pytest.mark.scale_out  # `make test-duckdb2` deselects these: the extension wheels need duckdb 1.5.5

SEED = int(os.environ.get("ARTIFACT_BUS_TEST_SEED", random.randrange(1 << 30)))

PRODUCER = """
import json, os, random, sys, warnings
from artifact_bus import job
from artifact_bus.core import load_config
from artifact_bus.testing import fills_table
import pyarrow as pa
log, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = load_config()                         # ARTIFACT_BUS_ROOT=s3://...: a producer on another machine
cfg.root.mkdir(parents=True, exist_ok=True)
rng = random.Random(seed)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    rows = {}
    with job(run_id=f"p{seed}-{i}", producer=f"producer-{seed}") as j:
        for a in range(rng.randint(1, 3)):
            kind = rng.choice(["fills", "fills", "events", "positions"])
            k = rng.randint(1, 300)
            t = fills_table(k, seed=seed * 1000 + i * 10 + a, run_id=f"p{seed}-{i}")
            if kind == "events":
                t = t.select(["ts", "symbol", "qty"])
                if rng.random() < 0.4: t = t.append_column("venue", pa.array(["XNAS"] * k))   # a new column
            elif kind == "positions":
                qty = t["qty"].cast(rng.choice([pa.int32(), pa.int64()]))  # widening
                t = pa.table({"symbol": t["symbol"], "qty": qty})
            j.add(kind, t, name=f"{kind}-{a}")
            rows[kind] = rows.get(kind, 0) + k
    os.write(fd, (json.dumps({"job_id": j.receipt.job_id, "status": j.receipt.status, "rows": rows}) + "\\n").encode())
    os.fsync(fd)
print("done", flush=True)
"""

# The writer loop: each ingest() pulls, ingests one batch and mirrors it; ends once the producers are done and nothing
# is left.
WRITER = """
import json, os, sys, time
from artifact_bus.core import load_config
from artifact_bus.ingest import ingest
from artifact_bus.pull import remote_jobs
root, log, producers_done = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = load_config(root)
print("ready", flush=True)
with open(log, "a") as out:
    while True:
        done = os.path.exists(producers_done)
        rep = ingest(config=cfg, max_jobs=cfg.batch_size, exports=False)
        out.write(json.dumps({"pulled": rep.pulled, "accepted": rep.accepted, "rejected": rep.rejected,
                              "snapshots": rep.lake_snapshots}) + "\\n"); out.flush()
        if done and not (rep.pulled or rep.accepted or rep.rejected or rep.remaining or remote_jobs(cfg)): break
        if not (rep.pulled or rep.accepted): time.sleep(0.05)
print("finished", flush=True)
"""

# A reader on another machine: only ARTIFACT_BUS_DUCKLAKE and the S3 environment.
READER = """
import json, os, sys, time
from artifact_bus.lake import lake_reader
stop = sys.argv[1]
stats = {"reads": 0, "attaches": 0, "errors": [], "max_seconds": 0.0, "snapshots": []}
con = None
while not os.path.exists(stop):
    t0 = time.monotonic()
    try:
        if con is None or stats["reads"] % 8 == 0:      # attach again and again, while the writer commits
            if con is not None: con.close()
            con = None; con = lake_reader(); stats["attaches"] += 1
        con.execute("BEGIN TRANSACTION")
        sid = con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0]
        seen = set()
        for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").fetchall():
            seen |= {r[0] for r in con.execute(f'SELECT DISTINCT _job_id FROM lake.main."{t}"').fetchall()}
        batches = [set(m.split()[1:]) for _, m in con.execute(
            "SELECT snapshot_id, commit_message FROM lake.snapshots() WHERE author = 'artifact_bus' "
            "ORDER BY snapshot_id").fetchall()]
        con.execute("COMMIT")
        prefix, whole = set(), seen == set()
        for b in batches:
            prefix |= b; whole = whole or prefix == seen
        if not whole: stats["errors"].append(f"snapshot {sid}: {len(seen)} jobs that are not whole batches in order")
        stats["reads"] += 1; stats["snapshots"].append(sid)
    except Exception as e:
        stats["errors"].append(f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"); con = None
    stats["max_seconds"] = max(stats["max_seconds"], time.monotonic() - t0)
    time.sleep(0.2)
print(json.dumps(stats), flush=True)
"""


@pytest.fixture
def bus(request, seaweedfs, postgres, tmp_path, monkeypatch):
    "A writer root whose bus.toml names its own prefix on the object store and its own DuckLake database."
    name = re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40]
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in seaweedfs.env.items():
        monkeypatch.setenv(k, v)
    url = f"s3://{seaweedfs.bucket}/{name}"
    root = tmp_path / "writer"
    root.mkdir()
    (root / "bus.toml").write_text(
        f'remote = "{url}"\nducklake = "{postgres.createdb(name)}"\nbatch_size = 5\ncompact_min_files = 0\n'
    )
    config = load_config(root)
    yield config
    lake._forget()


def _acked(logs) -> dict:
    "Acknowledged jobs from producer logs: {job_id: rows per kind}, committed ones only."
    out = {}
    for log in logs:
        for line in Path(log).read_text().splitlines():
            rec = json.loads(line)
            assert rec["status"] == "committed", rec
            out[rec["job_id"]] = rec["rows"]
    return out


def _assert_lake_equals_bus(config) -> dict:
    "Every lake table equals bus.<kind> (EXCEPT ALL both ways, _job_id and _run_id included); returns rows per kind."
    counts = {}
    with catalog(config.root) as c, lake.lake_reader(config=config) as lk:
        kinds = [r[0] for r in c.execute("SELECT kind FROM catalog.kinds").fetchall()]
        tables = {
            r[0] for r in lk.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'").fetchall()
        }
        assert tables == set(kinds)
        for kind in kinds:
            rows = c.sql(f"SELECT * FROM bus.{kind}").to_arrow_table()
            assert {"_job_id", "_run_id"} <= set(rows.column_names)
            lk.register("bus_rows", rows)
            cols = ", ".join(f'"{n}"' for n in rows.column_names)
            for a, b in ((f"lake.main.{kind}", "bus_rows"), ("bus_rows", f"lake.main.{kind}")):
                extra = lk.execute(
                    f"SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b})"
                ).fetchone()[0]
                assert extra == 0, f"{kind}: {extra} rows of {a} are not in {b}"
            lk.unregister("bus_rows")
            counts[kind] = rows.num_rows
        files = sum(lk.execute(f"SELECT count(*) FROM ducklake_list_files('lake', '{k}')").fetchone()[0] for k in kinds)
        assert (
            files == c.execute("SELECT count(*) FROM catalog.artifacts").fetchone()[0]
        )  # one lake file per artifact, none twice
    return counts


def _assert_cataloged_once(config, acked: dict) -> None:
    with catalog(config.root) as c:
        jobs = c.execute("SELECT job_id, status FROM catalog.jobs").fetchall()
        assert len(jobs) == len({j for j, _ in jobs}) == len(acked), (len(jobs), len(acked))
        assert {j for j, s in jobs if s == "accepted"} == set(acked)
        assert c.execute("SELECT count(*) FROM catalog.rejections").fetchone()[0] == 0
        got = {}
        for kind, job_id, n in c.execute(
            "SELECT kind, job_id, sum(rows) FROM catalog.artifacts GROUP BY ALL"
        ).fetchall():
            got.setdefault(job_id, {})[kind] = n
        assert got == acked
    assert pull.remote_jobs(config) == {}
    assert not any(config.tmp.iterdir()) and not any(p for p in config.inbox.iterdir() if p.name != ".tmp")


def test_producers_writer_and_readers_everywhere(bus, seaweedfs, tmp_path):
    "Remote producers, a pulling writer and lake readers at once: nothing lost, nothing twice, readers never fail."
    config, rng = bus, random.Random(SEED)
    lake.lake_connection(config).close()  # the writer's first attach creates the lake
    env = {"ARTIFACT_BUS_ROOT": config.remote, "ARTIFACT_BUS_DUCKLAKE": config.ducklake, **seaweedfs.env}
    stop, done = tmp_path / "stop-readers", tmp_path / "producers-done"
    readers = [
        spawn(READER, stop, cwd=tmp_path, env={**env, "ARTIFACT_BUS_SPOOL": tmp_path / f"reader{i}"}) for i in range(2)
    ]
    writer = spawn(WRITER, config.root, tmp_path / "writer.log", done, cwd=tmp_path, env=env)
    read_line(writer, "ready")
    logs = [tmp_path / f"producer{i}.log" for i in range(3)]
    producers = [
        spawn(
            PRODUCER,
            logs[i],
            10,
            rng.randrange(1000) * 10 + i,
            cwd=tmp_path,
            env={**env, "ARTIFACT_BUS_SPOOL": tmp_path / f"spool{i}"},
        )
        for i in range(3)
    ]
    try:
        for p in producers:
            out, err = finish(p)
            assert p.returncode == 0 and out.strip() == "done", err
        done.touch()
        out, err = finish(writer)
        assert writer.returncode == 0 and "finished" in out, err
    finally:
        stop.touch()
        stats = []
        for r in readers:
            out, err = finish(r)
            assert r.returncode == 0, err
            stats.append(json.loads(out))
        for p in producers + [writer]:
            kill(p)
    for s in stats:  # readers were never refused, never saw a partial batch, never waited on the writer
        assert s["errors"] == [], s["errors"][:5]
        assert s["reads"] >= 3 and s["attaches"] >= 1, s
        assert s["snapshots"] == sorted(s["snapshots"])
    acked = _acked(logs)
    assert len(acked) == 30
    _assert_cataloged_once(config, acked)
    counts = _assert_lake_equals_bus(config)
    assert sum(counts.values()) == sum(n for rows in acked.values() for n in rows.values())

    # one lake snapshot per ingest batch, its commit message naming exactly the batch's jobs; time travel to each
    batches = [
        rec["accepted"]
        for rec in map(json.loads, (tmp_path / "writer.log").read_text().splitlines())
        if rec["accepted"]
    ]
    assert max(len(b) for b in batches) <= config.batch_size
    with lake.lake_reader(config=config) as lk:
        snaps = lk.execute(
            "SELECT snapshot_id, commit_message FROM lake.snapshots() WHERE author = 'artifact_bus' ORDER BY 1"
        ).fetchall()
        assert [m.split()[0] for _, m in snaps] == ["ingest:"] * len(snaps)
        assert [m.split()[1:] for _, m in snaps] == batches
        so_far = {}
        for (sid, _), batch in zip(snaps, batches):
            for j in batch:
                for kind, n in acked[j].items():
                    so_far[kind] = so_far.get(kind, 0) + n
            for kind, n in so_far.items():
                assert lk.execute(f"SELECT count(*) FROM {kind} AT (VERSION => {sid})").fetchone()[0] == n, (sid, kind)


def test_producer_spools_while_object_storage_is_down(bus, tmp_path, monkeypatch):
    "S3 down: the job is spooled on the producer's machine; back up: flush() uploads it; the writer gets both."
    server = SeaweedFS(tmp_path / "own-weed").start()  # a server of its own, to stop and restart
    try:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        url = f"s3://{server.bucket}/spool-test"
        producer = load_config(url)
        producer.root.mkdir(parents=True, exist_ok=True)
        assert producer.remote == url and spool_dir(producer).parent == tmp_path / "spool"

        def submit_remote(qty):
            r = submit(pa.table({"qty": [qty]}), "fills", root=url, run_id=f"q{qty}")
            return r.job_id, r.status

        first = submit_remote(1)
        assert first[1] == "committed"
        server.stop(kill=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SpooledWarning
            second = submit_remote(2)
        assert second[1] == "spooled"
        assert spooled_jobs(config=producer) == [second[0]]
        server.start()
        flush(config=producer)
        assert spooled_jobs(config=producer) == []
        assert sorted(pull.remote_jobs(producer)) == sorted([first[0], second[0]])

        writer = load_config(bus.root, remote=url)
        rep = ingest(config=writer)
        assert rep.pulled == rep.accepted == [first[0], second[0]]
        assert pull.remote_jobs(writer) == {}
    finally:
        server.stop()


def test_a_job_left_by_a_dead_producer_goes_with_the_next_submit(seaweedfs, tmp_path, monkeypatch):
    "A producer dies after committing locally, before uploading: the next submit on that machine uploads its job too."
    for k, v in seaweedfs.env.items():
        monkeypatch.setenv(k, v)
    url = f"s3://{seaweedfs.bucket}/stranded"
    producer = load_config(url)
    producer.root.mkdir(parents=True, exist_ok=True)

    def die(*a, **kw):
        raise KeyboardInterrupt("killed before the upload")

    real = upload.deliver
    monkeypatch.setattr(upload, "deliver", die)
    with pytest.raises(KeyboardInterrupt):
        submit(pa.table({"qty": [1]}), "fills", root=url, run_id="dead")
    (left,) = [p.name for p in producer.inbox.iterdir() if p.name != ".tmp"]  # committed here, not uploaded
    assert pull.remote_jobs(producer) == {}
    monkeypatch.setattr(upload, "deliver", real)
    r = submit(pa.table({"qty": [2]}), "fills", root=url, run_id="next")
    assert r.status == "committed"
    assert sorted(pull.remote_jobs(producer)) == sorted([left, r.job_id])
    assert [p.name for p in producer.inbox.iterdir() if p.name != ".tmp"] == []


KILLED_WRITER = """
import sys
from artifact_bus.core import load_config
from artifact_bus.ingest import ingest
cfg = load_config(sys.argv[1])
print("pulling", flush=True)
ingest(config=cfg, exports=False)   # pulls first, then ingests and mirrors
print("done", flush=True)
"""


def _upload_jobs(config, n: int, tag: str) -> dict:
    "Submit `n` jobs as a remote producer in this process; returns {job_id: rows per kind}."
    producer = load_config(config.remote)
    producer.root.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        k = 1 + (i * 7) % 40
        r = submit(pa.table({"qty": list(range(k))}), "fills", root=config.remote, run_id=f"{tag}-{i}")
        assert r.status == "committed"
        out[r.job_id] = {"fills": k}
    return out


def test_writer_killed_mid_pull(bus, seaweedfs, tmp_path):
    "SIGKILL the writer at random instants while it pulls: every job ends cataloged exactly once."
    config, rng = bus, random.Random(SEED)
    acked = _upload_jobs(config, 24, "start")
    kills, rnd, delay = 0, 0, 0.6
    while kills < 3 and rnd < 20:  # until three writers were cut short; a writer that finished first halves the delay
        acked |= _upload_jobs(config, 3, f"round{rnd}")
        w = spawn(KILLED_WRITER, config.root, cwd=tmp_path, env=seaweedfs.env)
        read_line(w, "pulling")
        time.sleep(rng.uniform(0, delay))
        if w.poll() is None:
            kills += 1
        else:
            delay /= 2
        kill(w)
        rnd += 1
    assert kills >= 3
    for _ in range(2):  # clean runs: the second one finds nothing left
        w = spawn(KILLED_WRITER, config.root, cwd=tmp_path, env=seaweedfs.env)
        out, err = finish(w)
        assert w.returncode == 0 and "done" in out, err
    _assert_cataloged_once(config, acked)


MIRROR_WRITER = """
import sys
from artifact_bus import lake
print("mirroring", flush=True)
print(lake.mirror_all(sys.argv[1])["files"], flush=True)
"""


def test_writer_killed_mid_mirror_and_migration(bus, seaweedfs, tmp_path):
    """An existing bus gets a lake: mirror_all() by writers SIGKILLed mid-mirror (right after one of their
    lake commits, at a random delay), then a clean one — the lake ends equal to the bus, every artifact
    mirrored once, every intent recorded."""
    rng, toml = random.Random(SEED), bus.root / "bus.toml"
    with_lake = toml.read_text()
    toml.write_text("\n".join(l for l in with_lake.splitlines() if not l.startswith("ducklake")) + "\n")
    config = load_config(bus.root)  # a bus without a lake, so far
    acked = _upload_jobs(config, 20, "old")
    assert len(ingest(config=config, exports=False).accepted) == 20
    toml.write_text(
        with_lake.replace("batch_size = 5", "batch_size = 4")
    )  # now a lake; five transactions for twenty jobs
    config = load_config(bus.root)
    lake.lake_connection(config).close()
    kills, rnd, delay = 0, 0, 0.3
    with lake.lake_reader(config=config) as lk:
        snapshots = lambda: lk.execute("SELECT count(*) FROM lake.snapshots()").fetchone()[0]
        while (rnd < 3 or not kills) and rnd < 10:  # three writers, or more until one was cut short
            before = snapshots()
            w = spawn(MIRROR_WRITER, config.root, cwd=tmp_path, env=seaweedfs.env)
            read_line(w, "mirroring")
            while w.poll() is None and snapshots() == before:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, delay))
            if w.poll() is None:
                kills += 1
            else:
                delay /= 2
            kill(w)
            rnd += 1
    assert kills >= 1
    w = spawn(MIRROR_WRITER, config.root, cwd=tmp_path, env=seaweedfs.env)
    out, err = finish(w)
    assert w.returncode == 0, err
    _assert_cataloged_once(config, acked)
    _assert_lake_equals_bus(config)
    with writer_connection(config) as con:
        assert con.execute(
            "SELECT count(*) FILTER (snapshot_id IS NULL), count(*) FROM catalog.lake_files"
        ).fetchone() == (0, 20)
    with lake.lake_reader(config=config) as lk:  # each job in exactly one snapshot's commit message
        jobs = [
            j
            for (m,) in lk.execute(
                "SELECT commit_message FROM lake.snapshots() WHERE author = 'artifact_bus'"
            ).fetchall()
            for j in m.split()[1:]
        ]
        assert sorted(jobs) == sorted(acked)
