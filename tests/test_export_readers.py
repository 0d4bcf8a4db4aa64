"""Readers of an append export while the writer adds and merges its parts: real reader processes globbing the
export's folder (and one resolving its link first), a real writer ingesting and merging meanwhile."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time

import pyarrow as pa
from helpers import HANG_GUARD, clean_env, cli_argv

from artifact_bus import ingest, submit
from artifact_bus.core import load_config
from artifact_bus.export import export_status

ROWS = 50  # per job; job i holds the ids i * ROWS … (i + 1) * ROWS - 1

# Reads the export until told to stop. Every read must hold each id once and no gap: ids 0 … n - 1 for a
# whole number of jobs. `glob` reads through the link, `realpath` resolves it first. A read that fails
# because a file it listed is gone (a merge was published between listing and opening) is counted apart.
READER = r"""
import json, os, sys, time
import duckdb

folder, mode, stop_file, out = sys.argv[1:5]
rows = int(sys.argv[5])
reads, gone, bad, generations = 0, 0, [], set()
con = duckdb.connect()
while not os.path.exists(stop_file):
    if not os.path.islink(folder):
        time.sleep(0.005)
        continue
    where = os.path.realpath(folder) if mode == "realpath" else folder
    try:
        n, distinct, top = con.execute(
            f"SELECT count(*), count(DISTINCT id), max(id) FROM read_parquet('{where}/*.parquet')"
        ).fetchone()
    except duckdb.Error as e:
        if "No such file" in str(e) or "No files found" in str(e):
            gone += 1
            continue
        raise
    reads += 1
    generations.add(os.path.basename(os.path.realpath(folder)))
    if n != distinct or (n and top != n - 1) or n % rows:
        bad.append({"rows": n, "distinct": distinct, "max_id": top})
json.dump({"reads": reads, "gone": gone, "bad": bad[:10], "generations": len(generations)}, open(out, "w"))
"""


def _job(i: int) -> pa.Table:
    return pa.table({"id": list(range(i * ROWS, (i + 1) * ROWS)), "v": [float(i)] * ROWS})


def test_a_reader_globbing_an_append_export_never_sees_a_row_twice_or_missing(tmp_path, root, monkeypatch):
    ex = importlib.import_module("artifact_bus.export_parts")

    real_link = ex._link

    def slow_link(src, dest):  # a slow file system: building a generation takes a while, readers keep reading
        time.sleep(0.03)
        real_link(src, dest)

    monkeypatch.setattr(ex, "_link", slow_link)
    submit(_job(0), "fills", root=root)
    ingest(root)
    folder = load_config(root).exports_dir / "fills"
    stop_file = tmp_path / "stop"
    (tmp_path / "reader.py").write_text(READER)
    readers = {
        mode: subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "reader.py"),
                str(folder),
                mode,
                str(stop_file),
                str(tmp_path / mode),
                str(ROWS),
            ],
            env=clean_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("glob", "realpath")
    }
    try:
        merges, jobs = 0, 30
        for i in range(1, jobs):
            submit(_job(i), "fills", root=root)
            ingest(root)
            st = export_status(load_config(root))["fills"]
            merges += st["written_rows"] > ROWS  # this ingest merged parts too
            assert st["rows"] == (i + 1) * ROWS
    finally:
        stop_file.write_text("")
        for p in readers.values():
            try:
                p.wait(timeout=HANG_GUARD)
            finally:
                if p.poll() is None:
                    p.kill()
    got = {}
    for mode, p in readers.items():
        assert p.returncode == 0, f"{mode} reader failed: {p.stderr.read()[-3000:]}"
        got[mode] = json.loads((tmp_path / mode).read_text())
    assert merges >= 5, f"only {merges} ingests merged parts: the readers were not tested against merges"
    for mode, r in got.items():
        assert r["bad"] == [], f"the {mode} reader saw rows twice or missing: {r['bad']}"
        assert r["reads"] >= 20 and r["generations"] >= 10, (mode, r)
    assert got["realpath"]["gone"] == 0, got["realpath"]  # superseded generations stay for their readers
    assert st["parts"] <= 6, st  # few parts, however many ingests


def test_export_full_from_the_command_line_regenerates_an_append_export_as_one_part(root):
    for i in range(3):
        submit(_job(i), "fills", root=root)
        ingest(root)
    assert export_status(load_config(root))["fills"]["parts"] == 3
    p = subprocess.run(
        [*cli_argv(), "export", "fills", "--full", "--root", str(root), "--json"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert p.returncode == 0, p.stderr
    st = export_status(load_config(root))["fills"]
    assert (st["parts"], st["rows"], st["written_rows"]) == (1, 3 * ROWS, 3 * ROWS)
