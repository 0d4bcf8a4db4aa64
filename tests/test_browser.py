"""The bus browser in a real browser: Debian chromium driven by playwright.

Voila serves the operational notebook `nbs/ops/browse.ipynb` against a bus filled from the package's
fixtures (`artifact_bus.testing.submit_backtest`, plus one job a contract rejects); the tests pick a
kind, pick an artifact, requeue the rejected job and regenerate an export, as a user would. One smoke
test opens the same notebook in JupyterLab and runs it. Screenshots of each view go to tests/output/.

Servers listen on 127.0.0.1 only, on a free port, with the user's Jupyter config and data dirs replaced
by empty temporary ones; they are stopped by PID. Every request the page makes that is not to
127.0.0.1/localhost is aborted (Voila references fonts on a public CDN).

Needs /usr/bin/chromium (`apt-get install chromium`; never `playwright install`) and the `browse`
and `dev` extras. Without chromium the tests skip, unless BROWSER_TESTS=required (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import clean_env, require_chromium

pytest.importorskip("voila")
pytest.importorskip("jupyterlab")
require_chromium()

import pyarrow as pa  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from artifact_bus.testing import chromium, is_local, local_context  # noqa: E402

expect.set_options(timeout=60_000)  # a kernel starts and imports the package: a guard, not a timing assertion

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "nbs" / "ops" / "browse.ipynb"
OUTPUT = Path(__file__).resolve().parent / "output"
START_TIMEOUT = 90  # seconds for a server to answer: a guard against hangs, not a timing assertion
UI_TIMEOUT = 60_000  # ms for the page: a kernel starts and imports the package


# --- the bus ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bus(tmp_path_factory) -> dict:
    "Three simulated backtest runs and one `signals` job rejected by its contract."
    from artifact_bus.ingest import ingest
    from artifact_bus.submit import submit
    from artifact_bus.testing import submit_backtest

    root = tmp_path_factory.mktemp("browse") / "bus"
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "signals.toml").write_text('[columns]\nscore = "int32"\n')
    with pytest.MonkeyPatch.context() as mp:  # module scope: conftest's per-test clean environment is not there yet
        for k in [k for k in os.environ if k.startswith("ARTIFACT_BUS_")]:
            mp.delenv(k)
        mp.setenv("ARTIFACT_BUS_SPOOL", str(root.parent / "spool"))
        submit_backtest(root, runs=3)
        bad = submit(
            pa.table({"score": pa.array([1, 2], pa.int16())}),
            "signals",
            run_id="sim-004",
            producer="SignalLab",
            root=root,
        )
        rep = ingest(root)
    assert len(rep.accepted) == 6 and [r["job_id"] for r in rep.rejected] == [bad.job_id]
    return {"root": root, "rejected": bad.job_id}


# --- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(home: Path, root: Path) -> dict:
    "The environment of a Jupyter server: the bus root, and empty Jupyter/IPython dirs of its own."
    dirs = {
        k: home / k.lower()
        for k in (
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_DATA_DIR",
            "JUPYTER_RUNTIME_DIR",
            "IPYTHONDIR",
            "JUPYTERLAB_SETTINGS_DIR",
            "JUPYTERLAB_WORKSPACES_DIR",
        )
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # JupyterLab: no news and no update checks (no "get notified about Jupyter news?" toast either)
    notify = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notify.parent.mkdir(parents=True, exist_ok=True)
    notify.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    return clean_env(ARTIFACT_BUS_ROOT=root, ARTIFACT_BUS_SPOOL=home / "spool", HOME=home, **dirs)


def wait_http(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"server did not answer {url} within {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    "Stop a server this test started (and the kernels it started, via its own shutdown)."
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def voila(bus, tmp_path_factory):
    "Voila serving nbs/ops/browse.ipynb for the bus; yields its URL."
    home = tmp_path_factory.mktemp("voila")
    port, log = free_port(), home / "voila.log"
    argv = [
        sys.executable,
        "-m",
        "voila",
        str(NOTEBOOK),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--Voila.port_retries=0",
        "--VoilaConfiguration.show_tracebacks=True",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=home, env=server_env(home, bus["root"]), stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(proc, url, log)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def lab(bus, tmp_path_factory):
    "JupyterLab 4 on a folder holding a copy of browse.ipynb; yields its URL."
    home = tmp_path_factory.mktemp("lab")
    work = home / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / "browse.ipynb")
    port, log = free_port(), home / "lab.log"
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={work}",
        "--IdentityProvider.token=",
        "--allow-root",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=work, env=server_env(home, bus["root"]), stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(proc, url + "api/status", log)
        yield url
    finally:
        stop_server(proc)


# --- the browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:  # a fresh profile per launch
        yield b


@pytest.fixture
def page(browser):
    "A fresh page that can reach this machine only; what it blocked is in page.blocked."
    ctx = local_context(browser, viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(UI_TIMEOUT)
    pg.blocked = ctx.blocked
    try:
        yield pg
    finally:
        ctx.close()


def shot(page, name: str, selector: str = ".ab-browser") -> None:
    """Save a screenshot of the browser widget as tests/output/<name>.png (test output, never committed).
    The viewport grows to the widget's height first: Voila scrolls inside the page, and what lies below
    the viewport would come out blank."""
    OUTPUT.mkdir(exist_ok=True)
    el = page.locator(selector).first
    size = page.viewport_size
    page.set_viewport_size(
        {"width": size["width"], "height": max(size["height"], int(el.bounding_box()["height"]) + 400)}
    )
    try:
        el.screenshot(path=str(OUTPUT / f"{name}.png"))
    finally:
        page.set_viewport_size(size)


def open_voila(page, url: str) -> None:
    page.goto(url)
    expect(page.locator(".ab-browser")).to_be_visible()
    expect(page.locator(".ab-overview")).to_contain_text("Last ingest runs")


def tab(page, title: str) -> None:
    page.locator(".ab-tabs .lm-TabBar-tab", has_text=title).click()


def pick_artifact(page, kind: str) -> str:
    "Choose the first artifact of `kind` listed in the artifact dropdown (waiting until it is listed)."
    option = page.locator(".ab-artifact select option", has_text=f" · {kind} · ").first
    expect(option).to_be_attached()
    label = option.inner_text()
    page.select_option(".ab-artifact select", label=label)
    return label


def table_rows(page, selector: str) -> list[list[str]]:
    return [[c.strip() for c in r.locator("td").all_inner_texts()] for r in page.locator(f"{selector} tbody tr").all()]


# --- the tests -------------------------------------------------------------------------------------


def test_overview(page, voila, bus):
    open_voila(page, voila)
    ov = page.locator(".ab-overview")
    expect(ov).to_contain_text("idle (lock free)")
    expect(ov).to_contain_text(str(bus["root"]))
    runs = table_rows(page, ".ab-overview table.ab-runs")
    assert runs and runs[0][3] == "ok", runs
    shot(page, "browse-overview")
    assert not any(is_local(u) for u in page.blocked)


def test_pick_a_kind(page, voila):
    open_voila(page, voila)
    tab(page, "Jobs and artifacts")
    expect(page.locator(".ab-page")).to_contain_text("artifacts (page 1 of 1)")
    page.select_option(".ab-kind select", label="fills")
    expect(page.locator(".ab-page")).to_have_text("1–3 of 3 artifacts (page 1 of 1)")
    rows = table_rows(page, ".ab-table")
    header = page.locator(".ab-table thead th").all_inner_texts()
    kind, run = header.index("kind"), header.index("run_id")
    assert sorted((r[kind], r[run]) for r in rows) == [("fills", f"sim-00{i}") for i in (1, 2, 3)], rows
    page.fill(".ab-text input", "sim-002")
    page.press(".ab-text input", "Enter")
    expect(page.locator(".ab-page")).to_have_text("1–1 of 1 artifacts (page 1 of 1)")
    assert [r[run] for r in table_rows(page, ".ab-table")] == ["sim-002"]
    shot(page, "browse-artifacts")


def test_pick_an_artifact(page, voila):
    open_voila(page, voila)
    tab(page, "Jobs and artifacts")
    page.select_option(".ab-kind select", label="fills")
    expect(page.locator(".ab-page")).to_contain_text("of 3 artifacts")
    pick_artifact(page, "fills")
    expect(page.locator(".ab-detail")).to_contain_text("Lineage")
    expect(page.locator(".ab-detail")).to_contain_text("order_id")
    expect(page.locator(".ab-preview tbody tr")).to_have_count(20)
    line = page.locator('.ab-plot svg[data-plot="line"] polyline')
    expect(line).to_be_visible()
    assert line.bounding_box()["width"] > 100
    page.select_option(".ab-column select", label="price")
    expect(page.locator(".ab-plot svg title").first).to_have_text("price over ts")
    shot(page, "browse-artifact")
    # a kind without a time column: a histogram
    page.select_option(".ab-kind select", label="features")
    pick_artifact(page, "features")
    expect(page.locator('.ab-plot svg[data-plot="hist"] rect').first).to_be_visible()


def test_requeue_leaves_the_rejections_view(page, voila, bus):
    from artifact_bus.catalog import catalog

    open_voila(page, voila)
    tab(page, "Rejections")
    view = page.locator(".ab-rejections")
    expect(view).to_contain_text(bus["rejected"])
    expect(view).to_contain_text("contract")
    shot(page, "browse-rejections")
    (bus["root"] / "contracts" / "signals.toml").write_text('[columns]\nscore = "int16"\n')  # the fix
    page.select_option(".ab-rejected select", index=0)
    page.click(".ab-requeue")
    expect(page.locator(".ab-message")).to_have_text(f"requeued {bus['rejected']}: accepted")
    expect(view).to_contain_text("no job in quarantine")
    expect(view).not_to_contain_text(bus["rejected"])
    expect(page.locator(".ab-requeue")).to_be_disabled()
    with catalog(bus["root"]) as con:
        assert con.execute("SELECT status FROM catalog.jobs WHERE job_id = ?", [bus["rejected"]]).fetchall() == [
            ("accepted",)
        ]


def test_exports_regenerate(page, voila):
    open_voila(page, voila)
    tab(page, "Exports")
    expect(page.locator(".ab-exports")).to_contain_text("catalog_artifacts")
    page.select_option(".ab-export-name select", label="fills")
    page.click(".ab-regenerate")
    expect(page.locator(".ab-message")).to_have_text("regenerated 1 of 1 exports")
    rows = {r[0]: r for r in table_rows(page, ".ab-exports")}
    assert rows["fills"][1] == "ok" and rows["fills"][2] == "600", rows["fills"]
    shot(page, "browse-exports")


def test_jupyterlab_runs_the_notebook(page, lab):
    "Smoke test: JupyterLab opens browse.ipynb, runs every cell, and the browser widget appears."
    page.goto(lab + "lab/tree/browse.ipynb")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
        "&& window.jupyterapp.shell.currentWidget.sessionContext "
        "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
        "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
    )
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    expect(page.locator(".jp-OutputArea .ab-browser")).to_be_visible()
    expect(page.locator(".jp-OutputArea .ab-overview")).to_contain_text("Last ingest runs")
    page.locator(".jp-OutputArea .ab-tabs .lm-TabBar-tab", has_text="Jobs and artifacts").click()
    expect(page.locator(".jp-OutputArea .ab-page")).to_contain_text("artifacts (page 1 of 1)")
    shot(page, "browse-jupyterlab", ".jp-NotebookPanel")
