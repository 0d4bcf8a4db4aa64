"""Helpers shared by the tests: clean subprocess environments, talking to subprocesses line by line, file hashes,
whether a browser test can run."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A guard against hangs, never a timing assertion: generous enough for a slow, busy machine.
HANG_GUARD = 180


def cli_argv() -> list[str]:
    "The installed console script next to the interpreter, else the same entry point through -c."
    script = Path(sys.executable).parent / "artifact-bus"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from artifact_bus.cli import main; sys.exit(main())"]


def clean_env(**extra) -> dict:
    "The test process's environment without ARTIFACT_BUS_* variables (but the test's spool), plus `extra`."
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACT_BUS_") or k == "ARTIFACT_BUS_SPOOL"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def expect_line(proc: subprocess.Popen, want: str) -> str:
    "Read the next stdout line of `proc`; fail with its stderr if it is not `want`."
    line = proc.stdout.readline().strip()
    if line != want:
        proc.kill()
        _, err = proc.communicate(timeout=HANG_GUARD)
        raise AssertionError(f"expected {want!r} from the subprocess, got {line!r}\n--- stderr\n{err}")
    return line


def stop(proc: subprocess.Popen) -> None:
    "SIGKILL a subprocess this test started and reap it."
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=HANG_GUARD)
    except ValueError:  # pipes already closed
        proc.wait(timeout=HANG_GUARD)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# A process that takes the real writer lock at sys.argv[1], says "locked" and holds it until killed.
HOLDER = """
import sys, time
from artifact_bus.catalog_db import WriterLock
with WriterLock(sys.argv[1]):
    print("locked", flush=True)
    while True:
        time.sleep(60)
"""


def require_chromium() -> None:
    """Skip the browser test (or module) when Debian's chromium or playwright is missing; fail instead when
    BROWSER_TESTS=required or CI is set (CI installs both, so a missing browser must not pass as a skip)."""
    from artifact_bus.testing import CHROMIUM

    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "playwright is not installed: pip install -r requirements/dev.txt"
    if missing and (os.environ.get("BROWSER_TESTS") == "required" or os.environ.get("CI")):
        pytest.fail(missing, pytrace=False)
    if missing:
        pytest.skip(missing, allow_module_level=True)
