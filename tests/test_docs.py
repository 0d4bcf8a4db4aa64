"""Docs coverage: every CLI command, config key, catalog table and built-in export is documented."""

import argparse
import json
import re
from pathlib import Path

from artifact_bus.catalog_db import TABLES
from artifact_bus.cli import build_parser
from artifact_bus.core import CONFIG_KEYS, package_dir

NBS = Path(__file__).resolve().parent.parent / "nbs"


def markdown(nb: str) -> str:
    cells = json.loads((NBS / nb).read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_every_cli_command_is_documented_with_help():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    documented = set(re.findall(r"`artifact-bus (\w+)", markdown("10_cli.ipynb")))
    assert set(sub.choices) == documented
    for name, p in sub.choices.items():
        assert p.description, f"artifact-bus {name} has no description for --help"


def test_every_config_key_is_documented():
    documented = set(re.findall(r"^\| `(\w+)` \|", markdown("00_core.ipynb"), re.M))
    assert set(CONFIG_KEYS) <= documented, set(CONFIG_KEYS) - documented


def test_every_catalog_table_is_documented():
    documented = set(re.findall(r"`catalog\.(\w+)`", markdown("21_catalog_db.ipynb")))
    assert set(TABLES) | {"kinds"} <= documented


def test_every_builtin_export_is_documented():
    readme = (
        (package_dir("exports") / "README.md").read_text() if (package_dir("exports") / "README.md").exists() else ""
    )
    for sql in package_dir("exports").glob("*.sql"):
        first = sql.read_text().splitlines()[0]
        assert first.startswith("-- ") and len(first) > 10, (
            f"{sql.name} does not open with a comment saying what it exports"
        )
        assert sql.name in readme, f"{sql.name} is not listed in exports/README.md"
