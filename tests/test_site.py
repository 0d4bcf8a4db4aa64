"""The docs site, built and then used the way a newcomer would.

- The site builds offline with `mkdocs build --strict` (a broken link, a page missing from the nav, an
  undocumented config key or catalog column fails the build), once per test session, into a
  temporary folder.
- The generated reference pages mention every CLI command and option, config key, environment
  variable, catalog table and column, built-in export, export status field and manifest field; every
  module has an API page and a notebook page; the guarantees page names only tests that exist.
- The code on the home page and in the tutorial runs, in order, as written.
- No page loads anything from outside: no CDN script, stylesheet, font or image.
- The notebook pages show the outputs of a run the build made (the notebooks are committed without
  outputs), and leave out `#| hide` cells and nbdev's `#|` directive lines; the operational notebooks
  under nbs/ops/ are shown as written and say so.
- In headless Chromium: every page loads without a console error or a failed request, the navigation
  links lead to their pages, the search finds a page for a known word, and a screenshot of the home
  page is kept in tests/output/.
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import clean_env, require_chromium

REPO = Path(__file__).resolve().parent.parent
OUTPUT = Path(__file__).resolve().parent / "output"
BUILD_TIMEOUT = 900


# ---------------------------------------------------------------- the build


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    "The site, built once per session with --strict into a temporary folder."
    pytest.importorskip("mkdocs", reason="docs requirements are not installed (pip install -r docs/requirements.txt)")
    dest = tmp_path_factory.mktemp("site") / "_site"
    env = clean_env(NO_MKDOCS_2_WARNING="1")
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(dest)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if p.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed (exit {p.returncode}):\n{p.stderr[-6000:]}", pytrace=False)
    print(f"site built in {time.perf_counter() - t0:.1f}s")
    return dest


def page_text(site: Path, page: str) -> str:
    "The visible text of a built page (tags stripped, entities decoded)."
    raw = (site / page / "index.html").read_text()
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def section(site: Path, page: str, anchor: str) -> str:
    "The HTML of a page from the heading with id `anchor` to the next heading of the same level."
    raw = (site / page / "index.html").read_text()
    m = re.search(rf'<h(\d) id="{re.escape(anchor)}"', raw)
    assert m, f"{page}: no heading with id {anchor!r}"
    rest = raw[m.end() :]
    end = re.search(rf"<h{m.group(1)}\b", rest)
    return html.unescape(re.sub(r"<[^>]+>", " ", rest[: end.start()] if end else rest))


def subcommands():
    from artifact_bus.cli import build_parser

    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


# ---------------------------------------------------------------- the reference pages cover the code


def test_cli_reference_documents_every_command_and_option(site):
    text = page_text(site, "reference/cli")
    for name, p in subcommands().items():
        sec = section(site, "reference/cli", name)
        assert f"usage: artifact-bus {name}" in sec, f"the CLI page has no --help of `artifact-bus {name}`"
        assert " ".join(p.description.split()) in " ".join(text.split()), f"`artifact-bus {name}`: description missing"
        for action in p._actions:
            for opt in action.option_strings:
                assert opt in sec, f"`artifact-bus {name} {opt}` is not on the CLI page"
    for code in range(0, 8):
        assert re.search(rf"\|\s*{code}\s*\||<td>{code}</td>", (site / "reference/cli/index.html").read_text()), (
            f"exit code {code} undocumented"
        )


def test_config_reference_documents_every_key_and_variable(site):
    from artifact_bus.core import CONFIG_KEYS, ENV_KEYS

    sec = section(site, "reference/config", "keys")
    for key in CONFIG_KEYS:
        assert re.search(rf"\b{key}\b", sec), f"config key {key!r} is not in the Keys table of the config page"
    text = page_text(site, "reference/config")
    for var in [*ENV_KEYS, "ARTIFACT_BUS_CONFIG", "ARTIFACT_BUS_DEBUG"]:
        assert var in text, f"environment variable {var} is not on the config page"


def test_catalog_reference_documents_every_table_and_column(site):
    import duckdb

    from artifact_bus.catalog_db import TABLES, ensure_schema

    con = duckdb.connect()
    ensure_schema(con)
    rels = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'catalog'"
        ).fetchall()
    ]
    assert set(TABLES) | {"kinds"} <= set(rels)
    for t in rels:
        sec = section(site, "reference/catalog", f"catalog-{t}")
        for (col,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'catalog' AND table_name = ?", [t]
        ).fetchall():
            if col == "_v":  # the writer's publishing mark, described once at the top (readers never see it)
                continue
            row = re.search(rf"\b{col}\b\s+(\S[^\n]*)", sec)
            assert row, f"column catalog.{t}.{col} is not on the catalog page"
    assert "_job_id" in page_text(site, "reference/catalog") and "_run_id" in page_text(site, "reference/catalog")


def test_exports_reference_documents_every_builtin_export_and_status_field(site, tmp_path):
    import pyarrow as pa

    from artifact_bus import ingest, submit
    from artifact_bus.core import load_config, package_dir
    from artifact_bus.export import export_status

    text = page_text(site, "reference/exports")
    for sql in package_dir("exports").glob("*.sql"):
        assert sql.name in text, f"built-in export {sql.name} is not on the exports page"
    # the fields a real status file has, each documented
    root = tmp_path / "bus"
    submit(pa.table({"x": [1, 2]}), "things", root=root)
    ingest(root)
    status = export_status(load_config(root))
    assert {"things", "catalog_artifacts", "catalog_rejections"} <= set(status)
    sec = section(site, "reference/exports", "export-status")
    for field in {k for entry in status.values() for k in entry}:
        assert re.search(rf"\b{field}\b", sec), f"export status field {field!r} is not on the exports page"


def test_manifest_reference_documents_every_field(site):
    from artifact_bus.protocol import manifest_schema

    s = manifest_schema()
    sec = section(site, "reference/manifest-schema", "fields")
    for name in s["properties"]:
        assert re.search(rf"\b{name}\b", sec), f"manifest field {name!r} is not on the schema page"
    for name in s["$defs"]["artifact"]["properties"]:
        assert f"artifacts[].{name}" in sec, f"artifact field {name!r} is not on the schema page"


def test_every_module_has_an_api_page_and_a_notebook_page(site):
    for py in (REPO / "artifact_bus").glob("*.py"):
        m = re.search(r"File to edit: \.\./nbs/(\S+)\.ipynb", py.read_text()[:2000])
        if not m:
            continue
        api = site / "reference/api" / py.stem / "index.html"
        assert api.is_file(), f"artifact_bus.{py.stem} has no API page"
        assert (site / "modules" / m.group(1) / "index.html").is_file(), f"nbs/{m.group(1)}.ipynb has no page"
    # the docstrings are really there: the API page of submit documents submit() and its arguments
    text = page_text(site, "reference/api/submit")
    assert "Submit one table as a job of one artifact" in text and "required" in text
    for nb in (REPO / "nbs").rglob("*.ipynb"):
        if ".ipynb_checkpoints" in nb.parts:
            continue
        rel = nb.relative_to(REPO / "nbs").with_suffix("")
        assert (site / "modules" / rel / "index.html").is_file(), f"{nb.relative_to(REPO)} has no page"


def test_guarantees_page_names_only_tests_that_exist():
    text = (REPO / "docs/explanation/guarantees.md").read_text()
    refs = re.findall(r"`(test_\w+\.py)::(\w+)`", text)
    assert len(refs) >= 10, "the guarantees page should name the tests that prove each guarantee"
    for file, name in refs:
        path = REPO / "tests" / file
        assert path.is_file(), f"the guarantees page names {file}, which does not exist"
        defs = {
            n.name
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        assert name in defs, f"the guarantees page names {file}::{name}, which does not exist"


def test_no_page_loads_anything_from_outside(site):
    bad = re.compile(
        r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']?(?:https?:)?//"
        r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>"
        r"|@import\s+url\([\"']?(?:https?:)?//"
        r"|cdnjs\.|jsdelivr\.|unpkg\.com|fonts\.googleapis|fonts\.gstatic|mathjax",
        re.I,
    )
    found = []
    for f in site.rglob("*.html"):
        for m in bad.finditer(f.read_text()):
            found.append(f"{f.relative_to(site)}: {m.group(0)[:120]}")
    for f in (site / "assets" / "stylesheets").rglob("*.css"):
        if re.search(r"url\([\"']?https?://", f.read_text()):
            found.append(f"{f.relative_to(site)}: external url()")
    assert not found, "pages load from outside:\n" + "\n".join(found[:20])


# ---------------------------------------------------------------- the notebook pages: run by the build, cleaned as
# nbdev does


def output_areas(site: Path, page: str) -> list[tuple[str, str]]:
    "(mime type, visible text) of each output of a notebook page, in order."
    raw = (site / page / "index.html").read_text()
    out = []
    for m in re.finditer(
        r'<div class="[^"]*\bjp-OutputArea-output\b[^"]*"[^>]*data-mime-type="([^"]+)"[^>]*>(.*?)</div>\s*</div>',
        raw,
        re.S,
    ):
        out.append((m.group(1), " ".join(html.unescape(re.sub(r"<[^>]+>", " ", m.group(2))).split())))
    return out


def shown_code(site: Path, page: str) -> list[str]:
    "The source of each code cell a notebook page shows (the text its copy button copies)."
    raw = (site / page / "index.html").read_text()
    return [html.unescape(c) for c in re.findall(r'<div class="clipboard-copy-txt"[^>]*>(.*?)</div>', raw, re.S)]


def notebook_pages() -> list[tuple[Path, str]]:
    return [
        (nb, "modules/" + nb.relative_to(REPO / "nbs").with_suffix("").as_posix())
        for nb in sorted((REPO / "nbs").rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in nb.parts
    ]


def test_notebook_pages_show_the_outputs_of_a_run(site):
    # the notebooks are committed without outputs: what the pages show comes from the build's own run
    for nb, _ in notebook_pages():
        assert not any(c.get("outputs") for c in json.loads(nb.read_text())["cells"]), (
            f"{nb.relative_to(REPO)} is committed with outputs"
        )
    # 04_ingest's example ends with `rep`, the Report of the ingest it ran: its HTML repr is under the cell
    outs = output_areas(site, "modules/04_ingest")
    report = [t for mime, t in outs if mime == "text/html" and t.startswith("ingest run 1")]
    assert report, f"modules/04_ingest shows no Report under its example; outputs: {outs[:5]}"
    assert re.search(r"\baccepted 2 rejected 0 duplicates 0\b", report[0]), report[0]
    # 10_cli prints the CLI's --help: the usage line is under the cell
    assert any(t.startswith("usage: artifact-bus") for _, t in output_areas(site, "modules/10_cli")), (
        "modules/10_cli shows no --help"
    )
    # every module notebook ran to the end (a failure shows the page without outputs, and says so)
    for nb, page in notebook_pages():
        text = " ".join(page_text(site, page).split())
        if nb.parent.name == "ops":
            assert "Shown without outputs. This is an operational notebook" in text, (
                f"{page} does not say why it was not run"
            )
            assert not output_areas(site, page), f"{page}: an operational notebook was run by the docs build"
        elif m := re.search(r"Shown without outputs\. The docs were built without the (\S+) module", text):
            # allowed only for an optional extra this environment really lacks (chdb for the ClickHouse notebook)
            assert importlib.util.find_spec(m.group(1)) is None, f"{page} was not run, yet {m.group(1)} is installed"
        else:
            assert "Shown without outputs" not in text, f"{page} was not run by the docs build"
            assert re.search(r"In\s*\[\s*1\s*\]", text), f"{page} shows no executed cell"


def test_notebook_pages_leave_out_hidden_cells_and_directives(site):
    checked = 0
    for nb, page in notebook_pages():
        cells = json.loads(nb.read_text())["cells"]
        src = lambda c: "".join(c["source"])
        hidden = [src(c) for c in cells if c["cell_type"] == "code" and re.search(r"^#\|\s*hide\s*$", src(c), re.M)]
        elsewhere = {line.strip() for c in cells if src(c) not in hidden for line in src(c).splitlines()}
        code = shown_code(site, page)
        assert code, f"{page} shows no code"
        for c in code:
            assert not re.search(r"^\s*#\|", c, re.M), f"{page} shows an nbdev directive:\n{c[:300]}"
        shown = {line.strip() for c in code for line in c.splitlines()}
        for cell in hidden:
            for line in cell.splitlines():
                line = line.strip()
                if line.startswith("#") or len(line) < 12 or line in elsewhere:
                    continue
                assert line not in shown, f"{page} shows a line of a `#| hide` cell: {line}"
                checked += 1
    assert checked > 20, "no hidden line was checked: do the notebooks still have `#| hide` cells?"


# ---------------------------------------------------------------- the code on the pages runs

RUNNER = r"""
import json, os, subprocess, sys, traceback
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for page, i, lang, code in blocks:
    where = f"{page}, code block {i} ({lang})"
    try:
        if lang == "python":
            exec(compile(code, where, "exec"), ns)
        else:
            subprocess.run(["bash", "-euo", "pipefail", "-c", code], check=True)
    except BaseException:
        print(f"FAILED: {where}:\n{code}\n", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
print("ran", len(blocks), "blocks")
"""


def code_blocks(page: str) -> list:
    "The ```python and ```sh blocks of a docs page, in order."
    text = (REPO / "docs" / page).read_text()
    return [
        (page, i, lang, code)
        for i, (lang, code) in enumerate(re.findall(r"^```(python|sh)\n(.*?)^```", text, re.M | re.S), 1)
    ]


@pytest.mark.parametrize(
    "pages",
    [
        ["index.md"],
        ["tutorial/index.md", "tutorial/submit.md", "tutorial/ingest.md", "tutorial/browse.md", "tutorial/exports.md"],
    ],
    ids=["quickstart", "tutorial"],
)
def test_the_code_on_the_pages_runs_as_written(tmp_path, pages):
    blocks = [b for p in pages for b in code_blocks(p)]
    assert blocks
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env(
        ARTIFACT_BUS_ROOT=work / "bus",
        ARTIFACT_BUS_SPOOL=tmp_path / "spool",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    p = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, f"{p.stderr[-5000:]}\n--- stdout\n{p.stdout[-3000:]}"


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def server(site):
    "The built site served on 127.0.0.1 by python -m http.server, stopped by its pid."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the site server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser():
    "A chromium context whose requests that would leave this machine are aborted and listed in `.blocked`."
    require_chromium()
    from artifact_bus.testing import chromium, local_context

    with chromium() as b:
        ctx = local_context(b, viewport={"width": 1280, "height": 900})
        yield ctx
        ctx.close()


class Watch:
    "Console errors, page errors and failed requests of one page."

    def __init__(self, page):
        self.errors = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        # a request cancelled because the test moved on to the next page (net::ERR_ABORTED) is not a failure
        page.on(
            "requestfailed",
            lambda r: (
                "ERR_ABORTED" not in (r.failure or "") and self.errors.append(f"request failed: {r.url} ({r.failure})")
            ),
        )
        page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))


def all_pages(site: Path) -> list[str]:
    return sorted(
        "" if p.parent == site else p.parent.relative_to(site).as_posix() + "/"
        for p in site.rglob("index.html")
        if "assets" not in p.parts
    )


def test_every_page_loads_without_console_errors(site, server, browser):
    pages = all_pages(site)
    assert len(pages) > 40, pages
    page = browser.new_page()
    watch = Watch(page)
    problems = {}
    for rel in pages:
        watch.errors.clear()
        resp = page.goto(server + rel, wait_until="load")
        page.wait_for_timeout(50)
        if resp is None or resp.status != 200:
            watch.errors.append(f"status {resp and resp.status}")
        if not page.locator("article h1").count():
            watch.errors.append("no h1 in the article")
        if watch.errors:
            problems[rel or "/"] = list(watch.errors)
    page.close()
    assert not problems, json.dumps(problems, indent=1)
    assert not browser.blocked, f"pages tried to load from outside: {browser.blocked[:10]}"


def test_navigation_links_lead_to_their_pages(site, server, browser):
    page = browser.new_page()
    watch = Watch(page)
    page.goto(server, wait_until="load")
    links = page.eval_on_selector_all(
        "nav.md-nav--primary a.md-nav__link[href]", "els => els.map(a => [a.textContent.trim(), a.href])"
    )
    targets = {href.split("#")[0] for _, href in links if href.startswith(server)}
    assert len(targets) > 40, f"the navigation has only {len(targets)} pages"
    for href in sorted(targets):
        rel = href[len(server) :]
        assert (site / rel / "index.html").is_file() or (site / rel).is_file(), f"nav link {href} leads nowhere"
    # click through: home -> How-to guides -> Requeue a rejection -> Reference -> Catalog tables
    for text, path, h1 in [
        ("Requeue a rejection", "how-to/requeue/", "Requeue"),
        ("Catalog tables", "reference/catalog/", "Catalog tables"),
        ("Architecture", "explanation/architecture/", "Architecture"),
        ("04 ingest", "modules/04_ingest/", "ingest"),
        ("Home", "", "artifact_bus"),
    ]:
        page.locator("nav.md-nav--primary a.md-nav__link", has_text=text).first.click(force=True)
        page.wait_for_url(server + path)
        assert h1.lower() in page.locator("article h1").first.inner_text().lower(), (text, page.url)
    # the next-page link in the footer works too
    page.goto(server + "tutorial/submit/")
    page.locator("a.md-footer__link--next").click()
    page.wait_for_url(server + "tutorial/ingest/")
    assert not watch.errors, watch.errors
    page.close()


def test_search_finds_the_requeue_guide(server, browser):
    page = browser.new_page()
    watch = Watch(page)
    page.goto(server, wait_until="load")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    box = page.locator("input.md-search__input")
    box.fill("requeue")
    results = page.locator(".md-search-result__item a")
    results.first.wait_for(timeout=20_000)
    hrefs = results.evaluate_all("els => els.map(a => a.href)")
    assert any("how-to/requeue/" in h for h in hrefs), hrefs
    page.locator(".md-search-result__item a[href*='how-to/requeue/']").first.click()
    page.wait_for_url(re.compile(r".*/how-to/requeue/.*"))
    assert "requeue" in page.locator("article h1").first.inner_text().lower()
    assert not watch.errors, watch.errors
    page.close()


def test_home_page_screenshot(server, browser):
    OUTPUT.mkdir(exist_ok=True)
    page = browser.new_page()
    page.goto(server, wait_until="load")
    out = OUTPUT / "site-home.png"
    page.screenshot(path=str(out), full_page=False)
    page.close()
    assert out.stat().st_size > 10_000


def test_every_rejection_code_is_documented_in_the_requeue_guide():
    codes = set()
    for py in (REPO / "artifact_bus").glob("*.py"):
        codes |= set(re.findall(r"(?:rej|Rejection)\(\s*\"([a-z_]+)\"", py.read_text()))
        codes |= set(re.findall(r"code = \(?\s*\"([a-z_]+)\"", py.read_text()))  # also as the formatter splits it
    assert {"checksum_mismatch", "contract", "never_committed", "kind_invalid"} <= codes, codes
    text = (REPO / "docs/how-to/requeue.md").read_text()
    missing = sorted(c for c in codes if f"| `{c}` |" not in text)
    assert not missing, f"rejection codes not in the table of docs/how-to/requeue.md: {missing}"
