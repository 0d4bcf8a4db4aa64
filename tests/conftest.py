"""Shared fixtures for the process-level tests.

Every test gets its own bus root under pytest's `tmp_path`. Subprocesses run the same interpreter as
the tests (`sys.executable`) with a clean environment: no `ARTIFACT_BUS_*` variable of the developer's
shell can redirect a test to another root or catalog (only the test's own spool is passed on).

`make test` runs the modules in parallel processes (pytest-xdist, `--dist loadfile`: a module stays in one
process, so its module-scoped servers, browser and bus start once); nothing here may be shared between
processes but what the operating system hands out (temporary folders, free ports).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import HANG_GUARD, clean_env

# The modules `make test-duckdb2` does not run again on the second DuckDB line (marker `one_duckdb_line`), and why:
# what each proves does not depend on duckdb's version. Everything that ingests, reads, locks, exports or quarantines
# runs on both lines; so do the notebooks (nbdev-test).
ONE_DUCKDB_LINE = {
    "test_layers.py": "reads the package's source (ast), runs nothing",
    "test_layers_import.py": "what an import loads; the producer side never loads duckdb at all",
    "test_typing.py": "annotations and py.typed",
    "test_docs.py": "docs coverage of commands, keys, tables",
    "test_site.py": "the docs site, built with the docs requirements, which only the main venv has",
    "test_scan.py": "`artifact-bus scan` parses source files, opens no database",
    "test_browser.py": "the page in chromium; the widget code under it runs on both lines in test_browse_widgets.py "
    "and test_duckdb_lines.py",
    "test_typescript_producer.py": "the TypeScript producer writes jobs without DuckDB; ingesting jobs runs on both "
    "lines in test_submit_types.py and test_protocol_vectors.py",
    "test_crash_producer.py": "a producer killed mid-job; producers never open DuckDB",
    "test_lineage.py": "the lineage a producer captures under papermill, nbclient and scripts",
    "test_producers_script.py": "a producer script's idempotency key",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects
def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    missing = sorted(f for f in ONE_DUCKDB_LINE if not (here / f).is_file())
    assert not missing, f"tests/conftest.py ONE_DUCKDB_LINE names modules that do not exist: {missing}"
    for item in items:
        if item.path.name in ONE_DUCKDB_LINE:
            item.add_marker(pytest.mark.one_duckdb_line)


@pytest.fixture(autouse=True)
def _clean_bus_env(monkeypatch, tmp_path):
    """No ARTIFACT_BUS_* variable from the outside, a working directory without a project config, and a
    spool of the test's own, so that nothing a test submits can end up in the user's home."""
    for k in list(os.environ):
        if k.startswith("ARTIFACT_BUS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("ARTIFACT_BUS_SPOOL", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def root(tmp_path) -> Path:
    "A fresh, not yet created bus root."
    return tmp_path / "bus"


class Py:
    "Run Python snippets in fresh interpreters (the tests' own), as real separate processes."

    def __init__(self, cwd: Path):
        self.cwd = cwd

    def _argv(self, code, args):
        return [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]

    def run(self, code: str, *args, env: dict | None = None, check: bool = True, timeout=HANG_GUARD):
        "Run `code` to completion; returns the CompletedProcess (text mode)."
        p = subprocess.run(
            self._argv(code, args),
            cwd=self.cwd,
            env=clean_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"subprocess failed with exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
            )
        return p

    def json(self, code: str, *args, **kw):
        "Run `code` and parse its stdout as one JSON document."
        return json.loads(self.run(code, *args, **kw).stdout)

    def spawn(self, code: str, *args, env: dict | None = None, **kw) -> subprocess.Popen:
        "Start `code` in the background with pipes for stdin/stdout/stderr (text mode)."
        return subprocess.Popen(
            self._argv(code, args),
            cwd=self.cwd,
            env=clean_env(**(env or {})),
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kw,
        )


@pytest.fixture
def py(tmp_path) -> Py:
    return Py(tmp_path)


def _open_duckdb_files():
    fd_dir = Path("/proc/self/fd")
    out = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if ".duckdb" in target:
            out.append(target)
    return out


@pytest.fixture(autouse=True)
def no_duckdb_leak():
    "Fail a test that leaves a DuckDB file open in the test process (a connection never closed)."
    if not Path("/proc/self/fd").is_dir():
        yield
        return
    before = set(_open_duckdb_files())
    yield
    gc.collect()
    leaked = sorted(set(_open_duckdb_files()) - before)
    assert not leaked, f"DuckDB files left open by the test or the library: {leaked}"
