"""The bus browser's widgets, headless: set values and click buttons as a user would, then read what the
tables, the detail panel and the message line show. The notebook (nbs/13_browse.ipynb) tests the plain
functions and the happy paths; this file adds what needs processes or a bigger bus: a writer in another
process (busy, and running while the browser is open), no DuckDB file held open between clicks, paging
over many artifacts, and hostile text from producers."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("ipywidgets")

from helpers import expect_line, stop  # noqa: E402

from artifact_bus import catalog, ingest, submit  # noqa: E402
from artifact_bus.browse import SORTABLE, browser, list_artifacts  # noqa: E402
from artifact_bus.testing import submit_backtest  # noqa: E402

HOLD_LOCK = """
import sys
from artifact_bus.catalog_db import WriterLock
with WriterLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def open_duckdb_files() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if ".duckdb" in target:
            out.append(target)
    return out


def rows_in(html: str) -> int:
    return html.count("<tr>") - 1 if "<table" in html else 0


@pytest.fixture
def bus(root) -> Path:
    "Three backtest runs (12 artifacts) and one `signals` job its contract rejects."
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "signals.toml").write_text('[columns]\nscore = "int32"\n')
    submit_backtest(root, runs=3)
    submit(
        pa.table({"score": pa.array([1, 2], pa.int16())}), "signals", run_id="sim-004", producer="SignalLab", root=root
    )
    ingest(root)
    return root


def test_every_action_closes_its_connection(bus):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc")
    before = open_duckdb_files()
    b = browser(bus, page_size=5)
    assert open_duckdb_files() == before
    steps = [
        lambda: setattr(b.kind, "value", "fills"),
        lambda: setattr(b.artifact, "value", b.artifact.options[1][1]),
        lambda: setattr(b.column, "value", "qty"),
        lambda: setattr(b.sort, "value", "rows"),
        lambda: setattr(b.kind, "value", ""),
        b.next.click,
        b.prev.click,
        b.refresh_button.click,
        lambda: setattr(b.text, "value", "sim-002"),
    ]
    for step in steps:
        step()
        assert open_duckdb_files() == before, step
    assert b.message.value == ""


def test_writer_runs_in_another_process_while_the_browser_is_open(bus, py):
    b = browser(bus)
    b.kind.value = "fills"
    b.artifact.value = b.artifact.options[1][1]
    submit(pa.table({"score": pa.array([5], pa.int32())}), "signals", run_id="sim-009", producer="SignalLab", root=bus)
    py.run("import sys\nfrom artifact_bus import ingest\nassert len(ingest(sys.argv[1]).accepted) == 1", bus)
    b.kind.value = ""
    b.text.value = "sim-009"  # the next action reads the newest snapshot
    assert b.total == 1 and "sim-009" in b.table.value
    b.refresh_button.click()  # and a refresh renews the choices too
    assert "sim-009" in b.run.options


def test_a_busy_writer_is_a_message_not_an_error(bus, py):
    b = browser(bus)
    job = b.rejected.value
    holder = py.spawn(HOLD_LOCK, bus / "writer.lock")
    try:
        expect_line(holder, "locked")
        b.requeue_button.click()
        assert "writer busy: writer already running (pid" in b.message.value and "ab-bad" in b.message.value
        assert job in b.rejections.value
        b.export_name.value = "fills"
        b.regenerate_button.click()
        assert "writer busy: writer already running" in b.message.value
        b.refresh_button.click()  # the overview names the writer
        assert f"pid {holder.pid}" in b.overview.value
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        stop(holder)
    b.refresh_button.click()
    assert "idle (lock free)" in b.overview.value and b.message.value == ""


def test_requeue_takes_the_job_out_of_the_rejections_view(bus):
    b = browser(bus)
    job = b.rejected.value
    assert job and job in b.rejections.value and not b.requeue_button.disabled
    b.requeue_button.click()  # still bad: rejected again, still listed
    assert "rejected again: contract" in b.message.value and job in b.rejections.value
    (bus / "contracts" / "signals.toml").write_text('[columns]\nscore = "int16"\n')
    b.requeue_button.click()
    assert b.message.value == f'<span class="ab-ok">requeued {job}: accepted</span>'
    assert job not in b.rejections.value and "no job in quarantine" in b.rejections.value
    assert b.rejected.options == () and b.requeue_button.disabled
    b.requeue_button.click()  # nothing chosen: said, not raised
    assert "choose a rejected job first" in b.message.value
    b.kind.value = "signals"
    assert b.total == 1


def test_paging_and_sorting_many_artifacts(root):
    for i in range(23):
        submit(pa.table({"x": [float(i)] * (i + 1)}), "metrics", run_id=f"run-{i % 4}", producer="P", root=root)
    ingest(root)
    b = browser(root, page_size=10)
    assert (b.total, rows_in(b.table.value), b.prev.disabled, b.next.disabled) == (23, 10, True, False)
    b.sort.value, b.ascending.value = "rows", True
    assert "<td>1</td>" in b.table.value.split("</tr>")[1]  # the smallest first
    b.next.click()
    b.next.click()
    assert (b.page, rows_in(b.table.value), b.next.disabled, b.page_label.value) == (
        2,
        3,
        True,
        "21–23 of 23 artifacts (page 3 of 3)",
    )
    b.next.click()  # past the end (a disabled button clicked in code): the last page
    assert (b.page, rows_in(b.table.value)) == (2, 3)
    b.run.value = "run-1"  # a filter starts again at page 1
    assert (b.page, b.total) == (0, 6)
    for sort in SORTABLE:
        b.sort.value = sort
        assert b.message.value == "" and b.total == 6
    with catalog(root) as con:
        df, n = list_artifacts(con, run="run-1", sort="rows", desc=False, page_size=10)
    b.sort.value = "rows"
    assert n == 6 and [f"<td>{r}</td>" in b.table.value for r in df.rows] == [True] * 6


def test_selection_survives_paging_and_refresh(root):
    for i in range(12):
        submit(
            pa.table({"t": pa.array([i * 1_000_000, (i + 1) * 1_000_000], pa.timestamp("us")), "v": [1.0, 2.0 + i]}),
            "ticks",
            run_id="r",
            producer="P",
            root=root,
        )
    ingest(root)
    b = browser(root, page_size=5)
    chosen = b.artifact.options[2][1]
    b.artifact.value = chosen
    assert 'data-plot="line"' in b.plot.value and b.artifact_panel.layout.display is None
    b.next.click()
    assert b.artifact.value == chosen and "(not on this page)" in b.artifact.options[-1][0]
    b.refresh_button.click()
    assert b.current == chosen and chosen[0] in b.detail.value
    b.artifact.value = ""
    assert (b.detail.value, b.plot.value, b.artifact_panel.layout.display) == ("", "", "none")


def test_a_dropdown_shows_all_rather_than_nothing(bus):
    "ipywidgets shows a None value as no selection: the 'any' choices use '' and stay visible."
    b = browser(bus)
    assert (b.kind.value, b.kind.index, b.kind.label) == ("", 0, "(all)")
    assert (b.artifact.index, b.artifact.label) == (0, "(choose an artifact)")
    assert (b.export_name.index, b.export_name.label) == (0, "(all)")


def test_hostile_text_is_escaped_everywhere(root):
    evil = "<script>alert(1)</script>"
    submit(pa.table({"x": [1.0]}), "notes", run_id=evil, producer=evil, meta={"note": evil}, root=root)
    ingest(root)
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "notes.toml").write_text('[columns]\nx = "int64"\n')
    submit(pa.table({"x": [2.0]}), "notes", run_id=evil, producer=evil, root=root)
    ingest(root)
    b = browser(root)
    b.artifact.value = b.artifact.options[1][1]
    b.text.value = "' OR 1=1 --"
    assert b.total == 0
    b.text.value = "alert"
    assert b.total == 1
    views = [b.overview, b.table, b.detail, b.preview, b.plot, b.rejections, b.exports, b.message]
    assert all("<script>" not in w.value for w in views)
    assert (
        "&lt;script&gt;" in b.table.value
        and "&lt;script&gt;" in b.detail.value
        and "&lt;script&gt;" in b.rejections.value
    )


def test_nothing_published_yet(root):
    b = browser(root)
    assert "nothing published yet under" in b.message.value and "ab-bad" in b.message.value
    assert (b.total, b.rejected.options) == (0, ())
    submit(pa.table({"x": [1]}), "k", root=root)
    ingest(root)
    b.refresh_button.click()
    assert (b.total, b.message.value) == (1, "")


def test_a_file_missing_from_the_store_is_a_message(bus):
    b = browser(bus)
    b.kind.value = "fills"
    job, name = b.artifact.options[1][1]
    with catalog(bus) as con:
        (path,) = con.execute(
            "SELECT path FROM catalog.artifacts WHERE job_id = ? AND name = ?", [job, name]
        ).fetchone()
    os.rename(bus / path, bus / (path + ".away"))
    try:
        b.artifact.value = (job, name)
        assert f"{path} is missing from the store" in b.message.value and "artifact-bus doctor" in b.message.value
        assert job in b.detail.value and (b.preview.value, b.plot.value) == (
            "",
            "",
        )  # what the catalog knows, still shown
    finally:
        os.rename(bus / (path + ".away"), bus / path)
