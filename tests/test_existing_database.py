"""The catalog may live inside an existing analytics database: the bus adds its `catalog` and `bus`
schemas beside what is there and leaves every other object exactly as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from artifact_bus import catalog, ingest, load_config, submit
from artifact_bus.testing import backtest_run, submit_backtest

CANON = """
CREATE SCHEMA canon;
CREATE TABLE canon.alerts (
    alert_id BIGINT PRIMARY KEY, raised_at TIMESTAMP, symbol VARCHAR, severity TINYINT,
    score DOUBLE, tags VARCHAR[], note VARCHAR);
INSERT INTO canon.alerts VALUES
    (1, '2024-01-02 14:30:00.123456', 'SYM001', 3, 0.125, ['gap', 'open'], NULL),
    (2, '2024-01-02 15:00:00', 'SYM002', -1, NULL, [], 'quiet'),
    (3, NULL, NULL, 7, 1e300, NULL, 'héllo, «world»'),
    (4, '2024-12-31 23:59:59.999999', 'SYM003', 0, -0.0, ['x'], '');
CREATE VIEW canon.alerts_std AS
    SELECT alert_id, upper(symbol) AS symbol, severity::INTEGER AS severity, coalesce(score, 0) AS score
    FROM canon.alerts WHERE severity >= 0;
CREATE TABLE main.team_notes AS SELECT 42 AS answer;
"""


def _fingerprint(db) -> dict:
    "Everything a user could see of the non-bus objects of `db`, read read-only."
    con = duckdb.connect(str(db), read_only=True)
    try:

        def q(sql):
            return con.execute(sql).fetchall()

        rows = q("SELECT * FROM canon.alerts ORDER BY alert_id")
        return {
            "schemas": q(
                "SELECT schema_name FROM duckdb_schemas() WHERE NOT internal AND schema_name NOT IN "
                "('catalog', 'bus') ORDER BY 1"
            ),
            "tables": q(
                "SELECT schema_name, table_name, sql, column_count, estimated_size FROM duckdb_tables() "
                "WHERE NOT internal AND schema_name NOT IN ('catalog', 'bus') ORDER BY 1, 2"
            ),
            "views": q(
                "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal AND "
                "schema_name NOT IN ('catalog', 'bus') ORDER BY 1, 2"
            ),
            "columns": q(
                "SELECT table_schema, table_name, column_name, data_type, is_nullable FROM "
                "information_schema.columns WHERE table_schema NOT IN ('catalog', 'bus') ORDER BY 1, 2, "
                "ordinal_position"
            ),
            "constraints": q(
                "SELECT schema_name, table_name, constraint_type, constraint_text FROM "
                "duckdb_constraints() WHERE schema_name NOT IN ('catalog', 'bus') ORDER BY ALL"
            ),
            "alerts": rows,
            "alerts_text": hashlib.sha256(repr(rows).encode()).hexdigest(),
            "alerts_std": q("SELECT * FROM canon.alerts_std ORDER BY alert_id"),
            "team_notes": q("SELECT * FROM main.team_notes"),
        }
    finally:
        con.close()


def _schemas(db) -> set:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas() WHERE NOT internal").fetchall()}
    finally:
        con.close()


@pytest.fixture
def analytics_db(tmp_path):
    db = tmp_path / "alerts.duckdb"
    con = duckdb.connect(str(db))
    con.execute(CANON)
    con.close()
    return db


def _exercise(root, config=None):
    "Submit a backtest (multi-artifact, keyed jobs) and a fills job twice under one key, then ingest twice."
    submit_backtest(root, runs=2)
    t = backtest_run("sim-009", seed=9, n_fills=30)
    submit(t["fills"], "fills", run_id="sim-009", key="sim-009/fills", root=root)
    submit(t["fills"], "fills", run_id="sim-009", key="sim-009/fills", root=root)  # a retry: duplicate
    rep = ingest(root, config=config)
    assert len(rep.accepted) == 5 and len(rep.duplicates) == 1 and rep.rejected == []
    rep = ingest(root, config=config)
    assert rep.accepted == []


def _check_bus_beside_canon(root, db, before):
    assert _fingerprint(db) == before
    assert _schemas(db) >= {"canon", "catalog", "bus"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        kinds = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'bus'").fetchall()}
        assert kinds == {"fills", "positions", "events", "features"}
        assert con.execute("SELECT count(*) FROM catalog.jobs WHERE status = 'accepted'").fetchone()[0] == 5
    finally:
        con.close()
    # the bus's default catalog file was never created: the existing database is the catalog
    assert not (root / "artifact_bus.duckdb").exists()
    with catalog(root) as con:
        assert con.execute("SELECT count(*) FROM bus.fills").fetchone()[0] == 2 * 200 + 30
        assert con.execute("SELECT count(*) FROM catalog.jobs WHERE status = 'duplicate'").fetchone()[0] == 1
        # readers see the bus, not the analytics objects: the snapshot holds only the bus's schemas
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'canon'").fetchone()[0] == 0


def test_catalog_in_existing_database_via_bus_toml(root, analytics_db):
    before = _fingerprint(analytics_db)
    root.mkdir()
    (root / "bus.toml").write_text('catalog = "../alerts.duckdb"\n')
    assert load_config(root).catalog == analytics_db.resolve()

    _exercise(root)
    _check_bus_beside_canon(root, analytics_db, before)


def test_catalog_in_existing_database_via_environment(root, analytics_db, py):
    before = _fingerprint(analytics_db)
    py.run(
        """
        import sys
        from artifact_bus import load_config
        sys.path.insert(0, sys.argv[2])
        assert str(load_config(sys.argv[1]).catalog) == sys.argv[3], load_config(sys.argv[1])
        from test_existing_database import _exercise
        _exercise(sys.argv[1])
    """,
        root,
        Path(__file__).parent,
        analytics_db.resolve(),
        env={"ARTIFACT_BUS_CATALOG": analytics_db},
    )
    _check_bus_beside_canon(root, analytics_db, before)


def test_catalog_in_existing_database_via_argument(root, analytics_db):
    before = _fingerprint(analytics_db)
    config = load_config(root, catalog=analytics_db)
    assert config.catalog == analytics_db.resolve()
    _exercise(root, config)
    _check_bus_beside_canon(root, analytics_db, before)
