"""The `artifact-bus` command line, run as a real process.

Contract: subcommands `submit FILE --kind K [--run-id] [--producer] [--meta JSON] [--key]`,
`ingest [--max-jobs N]`, `catalog [SQL]` and `status`; all take `--root` and `--json`. An error is one
line on stderr starting with `error:`, never a traceback, and a non-zero exit: 3 when another writer
holds the lock, 4 for a bad job or manifest, 7 when something does not exist.
"""

from __future__ import annotations

import json
import subprocess

import pyarrow.parquet as pq
import pytest
from helpers import HANG_GUARD, HOLDER, clean_env, cli_argv, expect_line, stop

from artifact_bus import catalog, ingest, submit
from artifact_bus.core import is_job_id
from artifact_bus.testing import fills_table


@pytest.fixture
def cli(tmp_path):
    def run(*args, env=None, cwd=None):
        return subprocess.run(
            [*cli_argv(), *map(str, args)],
            cwd=cwd or tmp_path,
            env=clean_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )

    return run


def ok_json(p):
    "Assert a successful run and return its stdout parsed as one JSON document."
    assert p.returncode == 0, f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    assert "Traceback" not in p.stderr
    return json.loads(p.stdout)


def assert_error(p, exit_code=None) -> str:
    "Assert a failed run whose stderr is exactly one `error:` line; return that line."
    assert p.returncode != 0, f"expected a failure\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    if exit_code is not None:
        assert p.returncode == exit_code, f"exit {p.returncode}, want {exit_code}\n--- stderr\n{p.stderr}"
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, f"stderr must be one line, got {len(lines)}:\n{p.stderr}"
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def assert_no_job(root):
    "No job was created: nothing committed in the inbox, nothing left in progress."
    inbox = root / "inbox"
    if inbox.exists():
        assert [n for n in inbox.iterdir() if n.name != ".tmp"] == []
        assert not (inbox / ".tmp").exists() or list((inbox / ".tmp").iterdir()) == []


def first_value(out, column):
    "The first row's `column` of a `catalog --json` answer (rows as objects or as arrays)."
    rows = out["rows"] if isinstance(out, dict) else out
    assert rows, out
    row = rows[0]
    return row[column] if isinstance(row, dict) else row[0]


@pytest.fixture
def fills_file(tmp_path):
    p = tmp_path / "fills.parquet"
    pq.write_table(fills_table(25, seed=3, run_id="cli-1"), p)
    return p


def test_submit_ingest_catalog_status_json(cli, root, fills_file):
    out = ok_json(
        cli(
            "submit",
            fills_file,
            "--kind",
            "fills",
            "--run-id",
            "cli-1",
            "--producer",
            "cli-test",
            "--meta",
            '{"seed": 3, "note": "from the shell"}',
            "--key",
            "cli-1/fills",
            "--root",
            root,
            "--json",
        )
    )
    job_id = out["job_id"]
    assert is_job_id(job_id)
    assert out["status"] == "committed"
    assert (root / "inbox" / job_id / "COMMIT").is_file()

    status = ok_json(cli("status", "--root", root, "--json"))
    assert isinstance(status, dict)
    assert str(root.resolve()) in json.dumps(status)  # it reports on the bus it was pointed at

    rep = ok_json(cli("ingest", "--root", root, "--json"))
    assert rep["accepted"] == [job_id]
    assert rep["rejected"] == [] and rep["duplicates"] == []

    n = ok_json(cli("catalog", "SELECT count(*) AS n FROM bus.fills", "--root", root, "--json"))
    assert first_value(n, "n") == 25

    with catalog(root) as con:
        got = con.execute("SELECT run_id, producer, key, meta FROM catalog.jobs WHERE job_id = ?", [job_id]).fetchone()
    assert got[:3] == ("cli-1", "cli-test", "cli-1/fills")
    assert json.loads(got[3]) == {"seed": 3, "note": "from the shell"}

    # the same key again is a duplicate of the first job, and its rows do not appear twice
    again = ok_json(
        cli(
            "submit",
            fills_file,
            "--kind",
            "fills",
            "--run-id",
            "cli-1",
            "--key",
            "cli-1/fills",
            "--root",
            root,
            "--json",
        )
    )
    rep = ok_json(cli("ingest", "--root", root, "--json"))
    assert rep["accepted"] == []
    assert [(d["job_id"], d["duplicate_of"]) for d in rep["duplicates"]] == [(again["job_id"], job_id)]
    n = ok_json(cli("catalog", "SELECT count(*) AS n FROM bus.fills", "--root", root, "--json"))
    assert first_value(n, "n") == 25

    ok_json(cli("status", "--root", root, "--json"))


def test_ingest_max_jobs(cli, root):
    ids = [submit(fills_table(4, seed=i), "fills", run_id=f"r{i}", root=root).job_id for i in range(3)]
    rep = ok_json(cli("ingest", "--max-jobs", "2", "--root", root, "--json"))
    assert rep["accepted"] == ids[:2]  # oldest first
    rep = ok_json(cli("ingest", "--root", root, "--json"))
    assert rep["accepted"] == ids[2:]


def test_submit_missing_file_is_one_error_line(cli, root):
    assert_error(cli("submit", "missing.parquet", "--kind", "fills", "--root", root))
    assert_no_job(root)


def test_submit_bad_kind_exits_4(cli, root, fills_file):
    line = assert_error(cli("submit", fills_file, "--kind", "fills; drop table x", "--root", root), 4)
    assert "kind" in line
    assert_no_job(root)


def test_submit_bad_meta_is_one_error_line(cli, root, fills_file):
    assert_error(cli("submit", fills_file, "--kind", "fills", "--meta", "{not json", "--root", root))
    assert_no_job(root)


def test_catalog_before_anything_is_published_exits_7(cli, root):
    assert_error(cli("catalog", "SELECT 1", "--root", root), 7)


def test_catalog_bad_sql_is_one_error_line(cli, root):
    submit(fills_table(3), "fills", root=root)
    ingest(root)
    assert_error(cli("catalog", "SELECT no_such_column FROM bus.no_such_kind", "--root", root))


def test_ingest_while_another_writer_runs_exits_3_and_names_it(cli, root, py):
    submit(fills_table(3), "fills", root=root)
    holder = py.spawn(HOLDER, root / "writer.lock")
    try:
        expect_line(holder, "locked")
        line = assert_error(cli("ingest", "--root", root), 3)
        assert f"pid {holder.pid}" in line
        p = cli("ingest", "--root", root, "--json")  # with --json the error is one JSON object on stderr
        err = json.loads(p.stderr)
        assert (p.returncode, err["type"], err["exit_code"]) == (3, "WriterBusy", 3) and f"pid {holder.pid}" in err[
            "error"
        ]
    finally:
        stop(holder)
    assert ok_json(cli("ingest", "--root", root, "--json"))["accepted"]


def test_root_from_environment(cli, root, tmp_path, fills_file):
    env = {"ARTIFACT_BUS_ROOT": root}
    out = ok_json(cli("submit", fills_file, "--kind", "fills", "--json", env=env))
    assert (root / "inbox" / out["job_id"]).is_dir()
    rep = ok_json(cli("ingest", "--json", env=env))
    assert rep["accepted"] == [out["job_id"]]
    assert first_value(ok_json(cli("catalog", "SELECT count(*) AS n FROM bus.fills", "--json", env=env)), "n") == 25
    # the default root under the working directory was never used
    assert not (tmp_path / "data").exists()
    # and --root wins over the environment
    other = tmp_path / "other-bus"
    out2 = ok_json(cli("submit", fills_file, "--kind", "fills", "--root", other, "--json", env=env))
    assert (other / "inbox" / out2["job_id"]).is_dir()
    assert not (root / "inbox" / out2["job_id"]).exists()
