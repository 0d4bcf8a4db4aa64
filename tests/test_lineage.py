"""Lineage captured for real: a notebook run by papermill, by nbclient (`jupyter execute`) and by nbconvert
submits twice with a `git commit` in between; a script submits from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import HANG_GUARD, clean_env

BIN = Path(sys.executable).parent
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]

CELLS = [
    ("alpha = 0.1", ["parameters"]),
    (
        "import pyarrow as pa\nfrom artifact_bus import submit\n"
        "first = submit(pa.table({'x': [1]}), 'lineage_check', run_id='nb-run', new_kind=True)",
        [],
    ),
    (
        "import subprocess\nsubprocess.run("
        + repr(GIT)
        + " + ['commit', '--allow-empty', '-qm', 'second'], check=True)",
        [],
    ),
    ("second = submit(pa.table({'x': [2]}), 'lineage_check', run_id='nb-run', new_kind=True)", []),
    (
        "from artifact_bus.core import interactive\nassert not interactive(), 'a scheduled run draws no progress bars'",
        [],
    ),
]


def _repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in CELLS]
    nbformat.write(nb, repo / "analysis.ipynb")
    subprocess.run([*GIT, "-C", str(repo), "add", "analysis.ipynb"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "first"], check=True)
    return repo


def _head(repo) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _manifests(root) -> list[dict]:
    inbox = Path(root) / "inbox"
    return [
        json.loads((inbox / j / "manifest.json").read_text())
        for j in sorted(os.listdir(inbox))
        if not j.startswith(".")
    ]


RUNNERS = {
    "papermill": lambda nb, out: [str(BIN / "papermill"), str(nb), str(out), "-p", "alpha", "0.5", "--no-progress-bar"],
    "nbclient": lambda nb, out: [str(BIN / "jupyter"), "execute", str(nb)],
    "nbconvert": lambda nb, out: [
        str(BIN / "jupyter"),
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        str(nb),
        "--output",
        str(out),
    ],
}


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_notebook_lineage(tmp_path, runner):
    repo, root = _repo(tmp_path), tmp_path / "bus"
    first_commit = _head(repo)
    nb, out = repo / "analysis.ipynb", tmp_path / "out.ipynb"
    env = clean_env(ARTIFACT_BUS_ROOT=root, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("JPY_SESSION_NAME", None)
    p = subprocess.run(RUNNERS[runner](nb, out), cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert p.returncode == 0, p.stderr[-3000:]
    one, two = _manifests(root)
    for m in (one, two):
        assert m["lineage"]["notebook"] == str(nb), m["lineage"]
        assert m["producer"] == "analysis.ipynb"
        assert m["lineage"]["script"] is None
    want = {"alpha": 0.5} if runner == "papermill" else None
    assert (one["lineage"]["parameters"], two["lineage"]["parameters"]) == (want, want)
    assert one["lineage"]["git_commit"] == first_commit
    assert two["lineage"]["git_commit"] == _head(repo) != first_commit  # the commit made while the kernel ran
    assert one["lineage"]["git_dirty"] is False


def test_script_lineage(tmp_path):
    repo, root = _repo(tmp_path), tmp_path / "bus"
    (repo / "make_results.py").write_text(
        "import pyarrow as pa\nfrom artifact_bus import submit\n"
        "submit(pa.table({'x': [1]}), 'lineage_check', new_kind=True)\n"
    )
    subprocess.run(
        [sys.executable, "make_results.py"],
        cwd=repo,
        env=clean_env(ARTIFACT_BUS_ROOT=root),
        check=True,
        timeout=HANG_GUARD,
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pyarrow as pa; from artifact_bus import submit; "
            "submit(pa.table({'x': [1]}), 'lineage_check', new_kind=True)",
        ],
        cwd=repo,
        env=clean_env(ARTIFACT_BUS_ROOT=root),
        check=True,
        timeout=HANG_GUARD,
    )
    script, inline = _manifests(root)
    assert (script["producer"], script["lineage"]["script"], script["lineage"]["notebook"]) == (
        "make_results.py",
        str(repo / "make_results.py"),
        None,
    )
    assert script["lineage"]["git_commit"] == _head(repo) and script["lineage"]["git_dirty"] is False
    assert (inline["producer"], inline["lineage"]["script"]) == ("python", None)


KERNEL_CODE = (
    "import json, pyarrow as pa\nfrom artifact_bus import submit\n"
    "r = submit(pa.table({'x': [1]}), 'lineage_check', run_id='ide', new_kind=True)\n"
    "from artifact_bus.core import interactive\nassert interactive(), 'a notebook someone watches draws progress "
    "bars'\n"
)


@pytest.mark.parametrize("ide", ["jupyterlab", "vscode"])
def test_ide_kernel_lineage(tmp_path, ide):
    """A real ipykernel started the way each front end starts it: Jupyter Server (JupyterLab) puts the notebook's
    path in the kernel's environment as JPY_SESSION_NAME; VS Code defines `__vsc_ipynb_file__` in the kernel."""
    from jupyter_client.manager import start_new_kernel

    repo, root = _repo(tmp_path), tmp_path / "bus"
    nb = repo / "analysis.ipynb"
    env = clean_env(ARTIFACT_BUS_ROOT=root)
    env.pop("JPY_SESSION_NAME", None)
    if ide == "jupyterlab":
        env["JPY_SESSION_NAME"] = str(nb)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(repo))
    try:
        code = (f"__vsc_ipynb_file__ = {str(nb)!r}\n" if ide == "vscode" else "") + KERNEL_CODE
        reply = kc.execute_interactive(code, timeout=HANG_GUARD)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    (m,) = _manifests(root)
    assert (m["lineage"]["notebook"], m["producer"], m["lineage"]["git_commit"]) == (
        str(nb),
        "analysis.ipynb",
        _head(repo),
    )
