"""The systems compared: each writer stores artifacts one at a time into a fresh directory, the way a user of
that system would; and ingest() timed from the outside."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from artifact_bus.core import fsync_all, fsync_dir, fsync_file, sql_str


def ducklake_connection() -> duckdb.DuckDBPyConnection:
    "An in-memory DuckDB connection with the ducklake extension loaded offline, as the package loads it."
    from artifact_bus.lake import extension_dir, load_extensions

    con = duckdb.connect(
        config={
            "extension_directory": str(extension_dir()),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    load_extensions(con, ["ducklake"])
    return con


# ---------------------------------------------------------------------------------------------- writers
# Each writer stores artifacts one at a time into a fresh directory, the way a user of that system would.


class Floor:
    label = "floor: pyarrow write_table+fsync+rename"

    def __init__(self, d: Path, prefix: str = ""):
        self.d, self.prefix, self.i = d, prefix, 0
        d.mkdir(parents=True, exist_ok=True)

    def write(self, t: pa.Table) -> None:
        tmp = self.d / f".{self.prefix}{self.i:06d}.parquet.tmp"
        pq.write_table(t, tmp)
        fsync_file(tmp)
        os.rename(tmp, self.d / f"{self.prefix}{self.i:06d}.parquet")
        self.i += 1

    def close(self):
        pass

    def count(self) -> int:
        return duckdb.execute(f"SELECT count(*) FROM read_parquet({sql_str(self.d / '*.parquet')})").fetchone()[0]


class DuckDBDirect:
    label = "DuckDB direct: INSERT into one file"

    def __init__(self, d: Path, prefix: str = ""):
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / "fills.duckdb"
        self.con = duckdb.connect(str(self.path))
        self.created = False

    def write(self, t: pa.Table) -> None:
        self.con.register("__t", t)
        if not self.created:
            self.con.execute("CREATE TABLE IF NOT EXISTS fills AS SELECT * FROM __t LIMIT 0")
            self.created = True
        self.con.execute("INSERT INTO fills SELECT * FROM __t")  # autocommit: one transaction per artifact
        self.con.unregister("__t")

    def close(self):
        self.con.close()

    def count(self) -> int:
        with duckdb.connect(str(self.path), read_only=True) as c:
            return c.execute("SELECT count(*) FROM fills").fetchone()[0]


class Delta:
    label = "delta-rs: write_deltalake append"

    def __init__(self, d: Path, prefix: str = ""):
        from deltalake import write_deltalake

        self.path, self._w = str(d / "fills"), write_deltalake
        d.mkdir(parents=True, exist_ok=True)

    def write(self, t: pa.Table) -> None:
        self._w(self.path, t, mode="append")

    def close(self):
        pass

    def count(self) -> int:
        from deltalake import DeltaTable

        return DeltaTable(self.path).to_pyarrow_dataset().count_rows()


def iceberg_catalog(d: Path):
    from pyiceberg.catalog.sql import SqlCatalog

    (d / "warehouse").mkdir(parents=True, exist_ok=True)
    return SqlCatalog("bench", uri=f"sqlite:///{d / 'catalog.db'}", warehouse=f"file://{d / 'warehouse'}")


class Iceberg:
    label = "pyiceberg: append, SQL catalog on sqlite"

    def __init__(self, d: Path, prefix: str = ""):
        self.d = d
        self.cat = iceberg_catalog(d)
        self.tbl = None

    def write(self, t: pa.Table) -> None:
        if self.tbl is None:
            self.cat.create_namespace_if_not_exists("bench")
            self.tbl = self.cat.create_table_if_not_exists("bench.fills", schema=t.schema)
        self.tbl.append(t)

    def close(self):
        try:
            self.cat.engine.dispose()
        except Exception:
            pass

    def count(self) -> int:
        return iceberg_catalog(self.d).load_table("bench.fills").scan().count()


class DuckLake:
    label = "DuckLake: INSERT, DuckDB-file catalog"

    def __init__(self, d: Path, prefix: str = ""):
        d.mkdir(parents=True, exist_ok=True)
        self.con = ducklake_connection()
        self.con.execute(
            f"ATTACH {sql_str('ducklake:' + str(d / 'meta.ducklake'))} AS lake (DATA_PATH "
            f"{sql_str(str(d / 'data') + '/')})"
        )
        self.created = False

    def write(self, t: pa.Table) -> None:
        self.con.register("__t", t)
        if not self.created:
            self.con.execute("CREATE TABLE IF NOT EXISTS lake.fills AS SELECT * FROM __t LIMIT 0")
            self.created = True
        self.con.execute("INSERT INTO lake.fills SELECT * FROM __t")
        self.con.unregister("__t")

    def close(self):
        self.con.close()

    def count(self) -> int:
        return self.con.execute("SELECT count(*) FROM lake.fills").fetchone()[0]


class Protocol:
    """The job protocol's own file operations, in plain Python, and nothing else: the folder, the Parquet
    file, manifest.json and COMMIT, one parallel round of fsyncs, the rename, the fsync of the inbox.
    No validation, lineage or config: the least any producer following the protocol can do."""

    label = "protocol floor: the job protocol's file operations alone"
    MANIFEST = b'{"protocol": 1}'

    def __init__(self, d: Path, prefix: str = ""):
        self.d, self.prefix, self.i = d, prefix, 0
        self.tmp, self.inbox = d / "inbox" / ".tmp", d / "inbox"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def write(self, t: pa.Table) -> None:
        name = f"{self.prefix}{self.i:06d}"
        self.i += 1
        job = self.tmp / name
        job.mkdir()
        files = [job / "fills.parquet", job / "manifest.json", job / "COMMIT"]
        pq.write_table(t, files[0])
        files[1].write_bytes(self.MANIFEST)
        files[2].write_bytes(b"sha256:0")
        fsync_all(files, [job])  # one parallel round, as the package does it
        os.rename(job, self.inbox / name)
        fsync_dir(self.inbox)

    def close(self):
        pass

    def count(self) -> int:
        return duckdb.execute(
            f"SELECT count(*) FROM read_parquet({sql_str(self.inbox / '*' / '*.parquet')})"
        ).fetchone()[0]


class Bus:
    label = "artifact_bus: submit()"

    def __init__(self, d: Path, prefix: str = ""):
        from artifact_bus.submit import submit

        self.root, self._submit, self.i, self.prefix = d / "bus", submit, 0, prefix
        d.mkdir(parents=True, exist_ok=True)  # the root's parent must exist, else submit() spools (a missing mount)

    def write(self, t: pa.Table) -> None:
        self._submit(t, "fills", run_id=f"bench-{self.prefix}{self.i}", producer="bench", root=self.root, required=True)
        self.i += 1

    def close(self):
        pass

    def count(self) -> int:
        from artifact_bus.catalog import catalog

        with catalog(self.root) as c:
            return c.execute("SELECT count(*) FROM bus.fills").fetchone()[0]


class BusBatch(Bus):
    label = "artifact_bus batch(): submit() in a batch"

    def __init__(self, d: Path, prefix: str = ""):
        super().__init__(d, prefix)
        from artifact_bus.submit import batch

        self.batch = batch(root=self.root, required=True)
        self._submit = lambda t, kind, root, required, **kw: self.batch.submit(t, kind, **kw)

    def close(self):
        self.batch.flush()


WRITERS = {
    "floor": Floor,
    "protocol": Protocol,
    "duckdb": DuckDBDirect,
    "delta": Delta,
    "iceberg": Iceberg,
    "ducklake": DuckLake,
    "artifact_bus": Bus,
    "artifact_bus_batch": BusBatch,
}


class _Phases:
    """Time the phases of one ingest() from the outside: wraps the functions ingest() calls (publish, compaction,
    exports) for the duration of the call; the library is not changed. The data is queryable when the publish
    that follows the last batch returns."""

    NAMES = ("publish", "compact_kinds", "run_exports")

    def __init__(self, after_publish=None):
        "`after_publish()`, if given, runs after each publish returns; its time is recorded as a 'check' call."
        self.after_publish = after_publish

    def __enter__(self):
        import importlib

        m = importlib.import_module("artifact_bus.ingest")  # the module: `artifact_bus.ingest` is also the function
        self.m, self.saved, self.calls = m, {}, []
        for n in self.NAMES:
            f = getattr(m, n, None)
            if f is None:
                continue
            self.saved[n] = f

            def wrap(*a, __f=f, __n=n, **k):
                t0 = time.perf_counter()
                try:
                    out = __f(*a, **k)
                finally:
                    self.calls.append((__n, t0, time.perf_counter()))
                if __n == "publish" and self.after_publish is not None:
                    c0 = time.perf_counter()
                    try:
                        self.after_publish()
                    finally:
                        self.calls.append(("check", c0, time.perf_counter()))
                return out

            setattr(m, n, wrap)
        return self

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(self.m, n, f)


def bus_ingest(root: Path) -> dict:
    """ingest() as a user calls it (compaction and golden exports included). Returns the seconds until it
    returned, until the data was queryable (the publish after the last batch), and per phase."""
    from artifact_bus.ingest import ingest

    with _Phases() as ph:
        t0 = time.perf_counter()
        rep = ingest(root)
        t1 = time.perf_counter()
    pubs = [c for c in ph.calls if c[0] == "publish"]
    queryable = (pubs[rep.batches - 1][2] - t0) if rep.batches and len(pubs) >= rep.batches else t1 - t0
    phase = lambda n: sum(c[2] - c[1] for c in ph.calls if c[0] == n)
    return {
        "seconds": t1 - t0,
        "queryable_s": queryable,
        "publish_s": phase("publish"),
        "publishes": len(pubs),
        "compact_s": phase("compact_kinds"),
        "compacted": getattr(rep, "compacted", None),
        "exports_s": phase("run_exports"),
        "accepted": len(rep.accepted),
        "rejected": len(rep.rejected),
        "batches": rep.batches,
    }
