"""MkDocs hooks: the generated part of the docs site.

Nothing generated here is written into docs/: every page is added to the build in memory
(`File.generated`), so `mkdocs build` (or `mkdocs serve`) is the whole build and there is nothing to
commit or clean up. Each generated page is made from the source of truth it documents:

| site page | made from |
|---|---|
| `modules/*.ipynb` | the nbdev notebooks `nbs/*.ipynb`, executed by the build (`nbs/ops/*.ipynb` shown as written), rendered by mkdocs-jupyter |
| `reference/api/*.md` | the package's docstrings (mkdocstrings), one page per module |
| `reference/cli.md` | `artifact_bus.cli.build_parser()`: the `--help` of every command |
| `reference/config.md` | `artifact_bus.core.CONFIG_KEYS` and the settings table of `nbs/00_core.ipynb` |
| `reference/catalog.md` | the catalog DDL, created in an in-memory DuckDB and described column by column |
| `reference/manifest-schema.md` | `artifact_bus/manifest.schema.json` |
| `reference/exports.md` | the built-in export SQL files and the status table of `nbs/05_export.ipynb` |
| `protocol/*` | the repository's `protocol/` folder (the job protocol for other languages) |

A fact that cannot be documented — a config key missing from the notebook's table, a catalog column
without a description — is logged as a warning, so `mkdocs build --strict` fails and says what to add.

Links: a page may link to a repository file outside docs/ the way it would on GitHub
(`../nbs/05_export.ipynb`, `../protocol/PROTOCOL.md`); such links are rewritten to the page the site
makes from that file. A link to anything the site does not hold stays broken, and fails the build.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import importlib
import json
import logging
import os
import posixpath
import re
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files, InclusionLevel

log = logging.getLogger("mkdocs.hooks.artifact_bus")

REPO = Path(__file__).resolve().parent.parent
NBS = REPO / "nbs"
PROTOCOL_DIR = REPO / "protocol"
DOCS = REPO / "docs"

# Pages other contributors are writing. Until a page exists, the site carries a short stand-in so the
# navigation and the links to it hold; the stand-in disappears by itself once the real page is there.
PENDING = {
    "producers.md": ("Submit from another language",
                     "How to write a job from a producer in another language with the job protocol "
                     "(a TypeScript example). Until it is here, see the [job protocol](protocol/PROTOCOL.md) "
                     "and the [manifest JSON Schema](reference/manifest-schema.md)."),
    "browse.md": ("Browse the catalog with the widget browser",
                  "How to browse the catalog with the widget browser notebook. Until it is here, see "
                  "[Tutorial 3: browse the catalog](tutorial/browse.md)."),
    "benchmarks.md": ("Benchmarks", "The benchmark results table. Until it is here, see the `bench/` folder of the repository."),
}
PROTOCOL_PENDING = ("# The job protocol\n\nThe language-neutral description of the job protocol, written for producers in "
                    "other languages, goes here. Until it is here, see the [manifest JSON Schema](../reference/manifest-schema.md) "
                    "and [the protocol module](../modules/01_protocol.ipynb).\n")

# repository paths outside docs/ that the site holds, and where (repo prefix -> site prefix)
MIRRORS = {"nbs/": "modules/", "protocol/": "protocol/"}
SINGLE_FILES = {"README.md": "index.md", "artifact_bus/manifest.schema.json": "reference/manifest-schema.md",
                "exports/README.md": "reference/exports.md"}
SKIP_DIRS = {"node_modules", "dist", "build", ".git", "__pycache__", ".ipynb_checkpoints", "coverage"}


# ---------------------------------------------------------------- helpers

def md_cells(nb: str) -> list[str]:
    "The markdown cells of a notebook under nbs/."
    cells = json.loads((NBS / nb).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip() for c in cells]


def md_table(nb: str, first_header: str) -> tuple[list[str], list[list[str]], str]:
    "The first markdown table in notebook `nb` whose first column header is `first_header`: (header, rows, raw text)."
    for text in md_cells(nb):
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("|") and _split_row(line)[0] == first_header and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
                j = i + 2
                while j < len(lines) and lines[j].startswith("|"): j += 1
                return _split_row(line), [_split_row(r) for r in lines[i + 2:j]], "\n".join(lines[i:j])
    raise LookupError(f"nbs/{nb}: no markdown table whose first column is '{first_header}'")


def md_section(nb: str, heading: str) -> str:
    "The text of the markdown cell that opens with `## heading`, without the heading."
    for text in md_cells(nb):
        if text.startswith(f"## {heading}"):
            return text.split("\n", 1)[1].strip()
    raise LookupError(f"nbs/{nb}: no markdown cell opening with '## {heading}'")


def unticked(cell: str) -> str:
    return cell.strip().strip("`")


@contextlib.contextmanager
def columns(n: int):
    "argparse wraps help to $COLUMNS: make it the same on every machine."
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(n)
    try: yield
    finally:
        if old is None: os.environ.pop("COLUMNS", None)
        else: os.environ["COLUMNS"] = old


def flat_nav(nav) -> list[str]:
    out = []
    for item in nav or []:
        if isinstance(item, str): out.append(item)
        elif isinstance(item, dict):
            for v in item.values():
                out += flat_nav(v) if isinstance(v, list) else [v]
    return out


GENERATED_NOTE = "<!-- generated at build time by docs/hooks.py from {src}: edit the source, not the site -->\n"


# ---------------------------------------------------------------- reference pages

def subcommands() -> dict[str, argparse.ArgumentParser]:
    from artifact_bus.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def cli_page() -> str:
    parser, cmds = subcommands()
    _, exit_rows, _ = md_table("10_cli.ipynb", "exit")
    out = [GENERATED_NOTE.format(src="artifact_bus.cli.build_parser() and nbs/10_cli.ipynb"),
           "# Command line: `artifact-bus`\n",
           "Every command takes `--root` (else `ARTIFACT_BUS_ROOT`, else the project config, else `./data/bus`) and "
           "`--json` (machine-readable output on stdout). An error is one line on stderr starting `error:`, "
           "with a non-zero exit code and no traceback (set `ARTIFACT_BUS_DEBUG=1` to see one for an unexpected error). "
           "This page is the `--help` of each command, generated from the parser itself.\n",
           "| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#{name}) | {p.description} |" for name, p in cmds.items()]
    out += ["", "## Exit codes\n", "| exit | meaning |", "|---|---|"] + [f"| {a} | {b} |" for a, b in exit_rows]
    with columns(100):
        out += ["", "## `artifact-bus`\n", "```text", parser.format_help().rstrip(), "```"]
        for name, p in cmds.items():
            out += ["", f"## `{name}` {{#{name}}}\n", f"`artifact-bus {name}`: {p.description}\n",
                    "```text", p.format_help().rstrip(), "```"]
    return "\n".join(out) + "\n"


def config_page() -> str:
    from artifact_bus.core import CONFIG_KEYS, ENV_KEYS, Config
    header, rows, table = md_table("00_core.ipynb", "key")
    documented = {unticked(r[0]) for r in rows}
    for key in sorted(set(CONFIG_KEYS) - documented):
        log.warning("config key '%s' is not in the settings table of nbs/00_core.ipynb: document it there", key)
    for key in sorted(documented - set(CONFIG_KEYS)):
        log.warning("nbs/00_core.ipynb documents a config key '%s' that artifact_bus.core.CONFIG_KEYS does not know", key)
    intro = md_section("00_core.ipynb", "Configuration").split("\n| key |")[0].strip()
    after = md_section("00_core.ipynb", "Configuration").split(table, 1)[-1].strip()
    env_for = {v: k for k, v in ENV_KEYS.items()}
    out = [GENERATED_NOTE.format(src="artifact_bus.core.CONFIG_KEYS and nbs/00_core.ipynb"),
           "# Configuration keys\n", intro, "",
           "## Keys\n", table, "", after, "",
           "## Where each key may be set\n",
           "| key | project config (`[tool.artifact_bus]` in `pyproject.toml`, or `ARTIFACT_BUS_CONFIG`) | `<root>/bus.toml` | environment variable |",
           "|---|---|---|---|"]
    for key in CONFIG_KEYS:
        out.append(f"| `{key}` | yes | {'no (the root cannot name itself)' if key == 'root' else 'yes'} | "
                   f"{'`' + env_for[key] + '`' if key in env_for else '—'} |")
    out += ["", "## Environment variables\n", "| variable | sets |", "|---|---|"]
    out += [f"| `{e}` | the `{k}` key |" for e, k in ENV_KEYS.items()]
    out += ["| `ARTIFACT_BUS_CONFIG` | the project config file to read instead of the nearest `pyproject.toml` |",
            "| `ARTIFACT_BUS_DEBUG` | when set, the CLI shows the traceback of an unexpected error |", "",
            "## Example\n",
            "```toml", "# <root>/bus.toml", 'catalog = "/srv/analytics/alerts.duckdb"   # the catalog inside an existing database',
            'exports = ["/srv/research/exports"]          # your golden exports, beside the built-in ones',
            "batch_size = 500", "runs_keep = 200", "```", "",
            "```toml", "# pyproject.toml of a research repository", "[tool.artifact_bus]", 'root = "/data/bus"', "required = false", "```", "",
            "Check what a process resolves with `artifact-bus doctor` (it names the catalog) or, from Python, "
            "`artifact_bus.load_config().sources`, which says where each non-default value came from.", "",
            f"The resolved settings are an `artifact_bus.core.Config`: {', '.join(f'`{f}`' for f in Config.__dataclass_fields__ if f != 'sources')}."]
    return "\n".join(out) + "\n"


def catalog_columns() -> dict[str, list[tuple]]:
    "Per relation of the `catalog` schema: its columns (name, type, nullable, default), from a fresh in-memory catalog."
    import duckdb
    from artifact_bus.catalog_db import ensure_schema
    con = duckdb.connect()
    try:
        ensure_schema(con)
        rels = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'catalog' "
                                          "ORDER BY table_type, table_name").fetchall()]
        return {t: con.execute("SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                               "WHERE table_schema = 'catalog' AND table_name = ? ORDER BY ordinal_position", [t]).fetchall()
                for t in rels}
    finally:
        con.close()


def catalog_page() -> str:
    from artifact_bus.catalog_db import TABLES
    descriptions = tomllib.loads((DOCS / "reference" / "catalog-columns.toml").read_text())
    _, rows, _ = md_table("21_catalog_db.ipynb", "table")
    per = {unticked(r[0]).removeprefix("catalog.").split("`")[0]: r[1] for r in rows}
    cols = catalog_columns()
    out = [GENERATED_NOTE.format(src="the DDL in artifact_bus.catalog_db, nbs/21_catalog_db.ipynb and docs/reference/catalog-columns.toml"),
           "# Catalog tables\n",
           "The writer's DuckDB file holds two schemas the bus owns: `catalog` (these tables) and `bus` (one view per kind). "
           "Readers see the same tables and views in every published snapshot (`catalog()`, `artifact-bus catalog`, "
           "`cd <root> && duckdb -readonly published/latest.duckdb`). Paths are relative to the bus root; times are UTC "
           "(`TIMESTAMP WITH TIME ZONE`). The columns below are read from a fresh catalog created by "
           "`artifact_bus.catalog_db.ensure_schema`, so they are the real ones. In the writer's file every published "
           "table also has a `_v` column, the version that published the row (see the snapshots module); readers never "
           "see it.\n",
           "| table | one row per |", "|---|---|"]
    for t in cols:
        out.append(f"| [`catalog.{t}`](#catalog-{t}) | {per.get(t, '')} |")
    for t, c in cols.items():
        kind = "view" if t not in TABLES else "table"
        if t not in per: log.warning("catalog.%s is not in the tables table of nbs/21_catalog_db.ipynb: document it there", t)
        desc = descriptions.get(t, {})
        out += ["", f"## `catalog.{t}` {{#catalog-{t}}}\n", f"A {kind}, one row per {per.get(t, '…')}.", "",
                "| column | type | null | meaning |", "|---|---|---|---|"]
        for name, typ, nullable, default in c:
            if name == "_v":
                continue  # the writer's publishing mark, described once above
            meaning = desc.get(name)
            if not meaning:
                log.warning("column catalog.%s.%s has no description in docs/reference/catalog-columns.toml", t, name)
                meaning = ""
            if default is not None: meaning += f" Default {default}."
            out.append(f"| `{name}` | `{typ}` | {'yes' if nullable == 'YES' else 'no'} | {meaning} |")
        for name in sorted(set(desc) - {r[0] for r in c}):
            log.warning("docs/reference/catalog-columns.toml describes catalog.%s.%s, which does not exist", t, name)
    for t in sorted(set(descriptions) - set(cols) - {"bus"}):
        log.warning("docs/reference/catalog-columns.toml describes a table catalog.%s that does not exist", t)
    out += ["", "## `bus.<kind>` views\n", descriptions.get("bus", {}).get("_", "")]
    return "\n".join(out) + "\n"


def _schema_rows(node: dict, defs: dict, prefix: str, required=()) -> list[str]:
    rows = []
    for name, spec in node.get("properties", {}).items():
        spec = defs.get(spec.get("$ref", "").rsplit("/", 1)[-1], spec) if "$ref" in spec else spec
        typ = spec.get("type", "const " + json.dumps(spec["const"]) if "const" in spec else "")
        if isinstance(typ, list): typ = " or ".join(typ)
        rules = []
        for k in ("pattern", "minLength", "maxLength", "minimum", "minItems", "maxItems"):
            if k in spec: rules.append(f"{k} `{spec[k]}`" if k == "pattern" else f"{k} {spec[k]}")
        if "not" in spec and "pattern" in spec["not"]: rules.append(f"must not match `{spec['not']['pattern']}`")
        if spec.get("additionalProperties") is False: rules.append("no other keys")
        desc = spec.get("description", "")
        path = f"{prefix}{name}"
        rows.append(f"| `{path}` | {typ} | {'yes' if name in required else 'no'} | {desc} | {'; '.join(rules).replace('|', '&#124;')} |")
        if spec.get("type") == "object" and "properties" in spec:
            rows += _schema_rows(spec, defs, f"{path}.", spec.get("required", ()))
        items = spec.get("items")
        if isinstance(items, dict):
            items = defs.get(items.get("$ref", "").rsplit("/", 1)[-1], items)
            rows += _schema_rows(items, defs, f"{path}[].", items.get("required", ()))
    return rows


def manifest_page() -> str:
    from artifact_bus.protocol import COMMIT, MANIFEST, MAX_MANIFEST_BYTES, PROTOCOL, RESERVED_COLUMNS, manifest_schema
    s = manifest_schema()
    defs = s.get("$defs", {})
    out = [GENERATED_NOTE.format(src="artifact_bus/manifest.schema.json"),
           "# Manifest JSON Schema\n",
           f"{s['description']}\n",
           f"This is protocol version {PROTOCOL}. The schema (JSON Schema draft-07) ships inside the package: "
           "`artifact_bus.protocol.manifest_schema()` returns it, and the file is `manifest.schema.json` in the installed "
           "`artifact_bus` folder. It is the contract for producers in every language; "
           "the [job protocol](../protocol/PROTOCOL.md) explains how to write a job with it.\n",
           "## Rules beyond the schema\n",
           f"- `{COMMIT}` is written last and holds `sha256:<hex>` of the exact bytes of `{MANIFEST}`; a job is committed "
           f"if and only if `{COMMIT}` exists and matches.",
           f"- `{MANIFEST}` larger than {MAX_MANIFEST_BYTES:,} bytes is rejected unread.",
           "- `job_id` equals the job folder's name; the folder holds only `manifest.json`, `COMMIT` and the listed files, "
           "all regular files (no symlinks, no sub-folders).",
           "- Each file's size, checksum, Parquet row count and Arrow schema must equal the manifest's.",
           f"- Column names {', '.join(f'`{c}`' for c in RESERVED_COLUMNS)} are reserved for the bus (compared ignoring case).",
           "- The kind's contract, if it has one, must hold ([declare a contract](../how-to/contracts.md)).", "",
           "A job that breaks a rule is quarantined with a machine-readable `code` "
           "([the rejection codes](../how-to/requeue.md#rejection-codes)).\n",
           "## Fields\n",
           "| field | type | required | meaning | rules |", "|---|---|---|---|---|"]
    out += _schema_rows(s, defs, "", s.get("required", ()))
    out += ["", "## The schema\n", "```json", json.dumps(s, indent=2), "```"]
    return "\n".join(out) + "\n"


def exports_page() -> str:
    from artifact_bus.core import package_dir
    from artifact_bus.export import STATUS_FILE
    _, rows, table = md_table("05_export.ipynb", "field")
    folder = package_dir("exports")
    readme = (folder / "README.md").read_text()
    _, brows, btable = _readme_table(readme)
    listed = {unticked(r[0]) for r in brows}
    out = [GENERATED_NOTE.format(src="the built-in export files (exports/) and nbs/05_export.ipynb"),
           "# Golden exports: built-ins and status fields\n",
           "An export is a `.sql` file holding one `SELECT`. After each ingest the writer brings the exports whose "
           "inputs changed up to date, atomically, then writes "
           f"`<root>/exports/{STATUS_FILE}`. A full export is rewritten to `<root>/exports/<name>.parquet` "
           "(temporary file, then rename); an append export (`-- mode: append`, as the built-in ones) is the folder "
           "`<root>/exports/<name>/` of Parquet parts, to which each ingest adds one part with only its new rows: "
           "read it as `read_parquet('<root>/exports/<name>/*.parquet', union_by_name = true)`. How parts are merged "
           "and swapped: the [export notebook](../../nbs/05_export.ipynb). To add your own, see "
           "[add a golden export](../how-to/golden-export.md).\n",
           "## Built-in exports\n", btable, ""]
    for sql in sorted(folder.glob("*.sql")):
        if sql.name not in listed: log.warning("built-in export %s is not listed in exports/README.md", sql.name)
        out += [f"### `{sql.name}`\n", "```sql", sql.read_text().strip(), "```", ""]
    out += [f"## `{STATUS_FILE}` {{#export-status}}\n",
            "One JSON object per export name. `artifact-bus status` shows it, `artifact-bus doctor` reports every export "
            "that is not `ok`, and `artifact_bus.export.export_status(config)` reads it.\n", table, "",
            "Example:\n", "```json", json.dumps({"fills": {
                "attempted_at": "2025-01-02T14:05:01.120131+00:00", "bytes": 812345, "duration_s": 0.0421,
                "error": None, "generated_at": "2025-01-02T14:05:01.120131+00:00", "inputs": ["bus.fills"],
                "rows": 600, "source": ".../artifact_bus/exports/{kind}.sql", "status": "ok", "mode": "append",
                "path": "fills/*.parquet", "parts": 3, "generation": 42, "through_run": 57, "written_rows": 120}},
                indent=1), "```"]
    return "\n".join(out) + "\n"


def _readme_table(text: str):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| file |"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"): j += 1
            return _split_row(line), [_split_row(r) for r in lines[i + 2:j]], "\n".join(lines[i:j])
    raise LookupError("exports/README.md has no table whose first column is 'file'")


# ---------------------------------------------------------------- Python API pages (mkdocstrings)

def module_notebooks() -> dict[str, str]:
    "Each module of the package and the notebook it is exported from (nbdev's header), in notebook order."
    out = {}
    for py in sorted((REPO / "artifact_bus").glob("*.py")):
        m = re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", py.read_text()[:2000])
        if m: out[py.stem] = m.group(1)
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def api_modules() -> list[str]:
    return list(module_notebooks())


def notebook_of(module: str) -> str | None:
    return module_notebooks().get(module)


def top_level_names() -> list[tuple[str, str]]:
    "(module, name) of everything `import artifact_bus` offers, in the order of its __init__'s imports for type checkers."
    import ast
    tree = ast.parse((REPO / "artifact_bus" / "__init__.py").read_text())
    return [(node.module, a.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            for a in node.names if node.module and node.module.startswith("artifact_bus.")]


def api_index_page() -> str:
    out = [GENERATED_NOTE.format(src="artifact_bus/__init__.py and the docstrings"),
           "# Python API\n",
           "`import artifact_bus` gives the names below; each module has its own page (from the docstrings) and its "
           "notebook (the same code with its examples, which are also its tests).\n",
           "| name | module | what |", "|---|---|---|"]
    for mod, name in top_level_names():
        obj = getattr(importlib.import_module(mod), name)
        doc = (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""
        page = mod.split(".", 1)[1]
        out.append(f"| [`{name}`]({page}.md#{mod}.{name}) | `{mod}` | {doc.replace('|', '&#124;')} |")
    out += ["", "## Modules\n", "| module | docstrings | notebook |", "|---|---|---|"]
    for m in api_modules():
        nb = notebook_of(m)
        out.append(f"| `artifact_bus.{m}` | [{m}]({m}.md) | [{nb}](../../modules/{nb}) |")
    return "\n".join(out) + "\n"


def api_module_page(m: str) -> str:
    nb = notebook_of(m)
    mod = importlib.import_module(f"artifact_bus.{m}")
    return (GENERATED_NOTE.format(src=f"the docstrings of artifact_bus.{m}") +
            f"# `artifact_bus.{m}`\n\n"
            f"The prose, the examples and the tests of this module are in its notebook: [{nb}](../../modules/{nb}).\n\n"
            f"::: artifact_bus.{m}\n    options:\n      show_root_heading: false\n      show_root_toc_entry: false\n"
            + ("" if getattr(mod, "__all__", None) else "      members: true\n"))


# ---------------------------------------------------------------- links to repository files

def listing_page(folder: Path) -> str:
    "A page listing the files of a repository folder that a mirrored page links to."
    rel = folder.relative_to(REPO).as_posix()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in SKIP_DIRS)
    out = [GENERATED_NOTE.format(src=rel + "/"), f"# `{rel}/`\n",
           f"The files of the repository folder `{rel}/`.\n"]
    for p in entries:
        out.append(f"- [`{p.name}{'/' if p.is_dir() else ''}`]({p.name}/index.md)" if p.is_dir() else f"- [`{p.name}`]({p.name})")
    return "\n".join(out) + "\n"


def repo_path_of(src_uri: str) -> str:
    "Where a site page comes from in the repository."
    for repo_prefix, site_prefix in MIRRORS.items():
        if src_uri.startswith(site_prefix): return repo_prefix + src_uri[len(site_prefix):]
    return "docs/" + src_uri


def site_path_of(repo_path: str) -> str | None:
    "The site file made from a repository file, if the site holds one."
    if repo_path.startswith("docs/"): return repo_path[len("docs/"):]
    if repo_path in SINGLE_FILES: return SINGLE_FILES[repo_path]
    for repo_prefix, site_prefix in MIRRORS.items():
        if repo_path.startswith(repo_prefix): return site_prefix + repo_path[len(repo_prefix):]
    return None


_LINK_RE = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\s+\"[^\"]*\")?\)")


def rewrite_links(markdown: str, src_uri: str) -> str:
    here = posixpath.dirname(repo_path_of(src_uri))
    page_dir = posixpath.dirname(src_uri)

    def fix(m):
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"): return m.group(0)
        repo_target = posixpath.normpath(posixpath.join(here, target))
        if repo_target.startswith("docs/") and not src_uri.startswith(tuple(MIRRORS.values())): return m.group(0)
        site = site_path_of(repo_target)
        if site is None: return m.group(0)
        if (REPO / repo_target).is_dir():
            readme_only = (REPO / repo_target / "README.md").exists() and not (REPO / repo_target / "index.md").exists()
            site = posixpath.join(site, "README.md" if readme_only else "index.md")
        new = posixpath.relpath(site, page_dir or ".")
        return f"{m.group(1)}{new}{m.group(3) or ''}{m.group(4) or ''})"

    out, fence = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(("```", "~~~")): fence = not fence
        out.append(line if fence else _LINK_RE.sub(fix, line))
    return "\n".join(out)


# ---------------------------------------------------------------- the notebooks, executed

# The notebooks are committed without outputs; their pages show the outputs of a run made by the build.
# Each notebook runs the way `nbdev-test` runs it (execnb's in-process shell, from the notebook's folder,
# `IN_TEST` set, cells flagged with a `tst_flags` directive skipped), in a process of its own; then nbdev's
# own processors keep what a reader should see: `#| hide` cells dropped, `#| hide_line` lines dropped,
# the `#|` directive lines stripped. The result is kept in EXECUTED (gitignored), named after a hash of
# the notebook, the package's source and this file, so a build re-runs only what changed.
EXECUTED = REPO / ".cache" / "executed-notebooks"
NOT_EXECUTED = {   # folders of nbs/ whose notebooks the build shows as written, and why (said on their pages)
    "ops": "This is an operational notebook: run, it acts on a real bus (ingest, or the browser's widgets), "
           "so the docs build shows it as written, without outputs.",
}
NB_TIMEOUT = int(os.environ.get("DOCS_NB_TIMEOUT", "600"))   # seconds per notebook
_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")
NB_WORKERS = int(os.environ.get("DOCS_NB_WORKERS", "2"))      # notebooks executed at once


def _package_hash() -> str:
    """A hash of what every notebook's run depends on besides itself: the package, its built-in files, this file, the
    environment (its folder) and the version of every distribution installed there (a bumped dependency runs them again)."""
    import importlib.metadata
    h = hashlib.sha256()
    folders = ["artifact_bus", "exports", "contracts", "nbs/ops"]   # the package and the folders core.package_dir serves
    for p in [Path(__file__).resolve(), REPO / "pyproject.toml",
              *sorted(p for f in folders for p in (REPO / f).rglob("*") if p.is_file() and "__pycache__" not in p.parts)]:
        h.update(p.relative_to(REPO).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    site_packages = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})   # not the cwd's
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions(path=site_packages))
    h.update("\n".join([sys.prefix, *dists]).encode())
    return h.hexdigest()


def executed_copy(nb: Path, key: str) -> Path:
    "Where the run of notebook `nb` with the package and environment hashed as `key` is kept (it exists once it passed)."
    rel = nb.relative_to(NBS)
    h = hashlib.sha256((key + hashlib.sha256(nb.read_bytes()).hexdigest()).encode()).hexdigest()[:16]
    return EXECUTED / rel.parent / f"{nb.stem}.{h}" / nb.name   # the page's download keeps the notebook's name


def not_executed_reason(nb: Path) -> str | None:
    return NOT_EXECUTED.get(nb.relative_to(NBS).parts[0]) if len(nb.relative_to(NBS).parts) > 1 else None


def execute_notebook(src: Path, dst: Path) -> None:
    "Run notebook `src` as nbdev-test does, keep what a reader should see, write it to `dst` (runs in a child process)."
    from execnb.shell import CaptureShell
    from fastcore.nbio import write_nb
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.processors import hide_, hide_line, rm_header_dash
    os.environ["IN_TEST"] = "1"
    flags = set(str(get_config().get("tst_flags", "")).split())
    nb = NBProcessor(src, rm_directives=False).nb
    shell = CaptureShell(src)
    with working_directory(src.parent):
        try:
            shell.run_all(nb, exc_stop=True, cell_timeout=NB_TIMEOUT,
                          preproc=lambda c: c.cell_type != "code" or bool(flags & c.directives_.keys()))
        except BaseException:
            sys.stderr.write(shell.prettytb(fname=src) or f"{src}: {shell.exc!r}")
            raise SystemExit(1)

    def strip_ansi(cell):   # nbdev's strip_ansi expects a stream's text as one string; execnb may give a list
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                o["text"] = _ANSI.sub("", "".join(o["text"]) if isinstance(o["text"], list) else o["text"])

    def drop_empty(cell):   # a cell left empty by the directives' removal (`#| default_exp`), with nothing to show
        if cell.cell_type == "code" and not cell.source.strip() and not cell.get("outputs"): del cell["source"]

    NBProcessor(nb=nb, procs=[hide_, hide_line, rm_header_dash, strip_ansi, drop_empty], rm_directives=True).process()
    n = 0
    for cell in nb.cells:   # nothing of the run's clock in the page; the prompts numbered as shown, hidden cells left out
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            n += 1
            cell.execution_count = n
            for o in cell.get("outputs", []):
                if "execution_count" in o: o["execution_count"] = n
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    write_nb(nb, tmp)
    tmp.replace(dst)


def shown_as_written(nb: Path, dst: Path, note: str) -> None:
    "The notebook unexecuted, `#| hide` cells and directive lines dropped, with `note` under its title."
    from fastcore.nbio import mk_cell, write_nb
    from nbdev.process import NBProcessor
    from nbdev.processors import hide_, hide_line, rm_header_dash
    nb_ = NBProcessor(nb, procs=[hide_, hide_line, rm_header_dash], rm_directives=True, process=True).nb
    nb_.cells = [c for c in nb_.cells if c.cell_type != "code" or c.source.strip()]
    nb_.cells.insert(1 if nb_.cells and nb_.cells[0].cell_type == "markdown" else 0,
                     mk_cell(f"> **Shown without outputs.** {note}", "markdown"))
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb_, dst)


def executed_notebooks(nbs: list[Path]) -> dict[Path, Path]:
    "Each notebook and the copy its page is made from: executed (or taken from the cache), or shown as written."
    key = _package_hash()
    out, todo = {}, []
    for nb in nbs:
        out[nb] = dst = executed_copy(nb, key)
        if dst.is_file(): continue
        if (reason := not_executed_reason(nb)):
            shown_as_written(nb, dst, reason)
        else:
            todo.append((nb, dst))

    def run(item):
        nb, dst = item
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "execute", str(nb), str(dst)], cwd=REPO,
                           capture_output=True, text=True, timeout=NB_TIMEOUT + 60)
        return nb, dst, p, time.perf_counter() - t0

    with concurrent.futures.ThreadPoolExecutor(max(1, NB_WORKERS)) as pool:
        for nb, dst, p, seconds in pool.map(run, todo):
            rel = nb.relative_to(REPO)
            if p.returncode == 0:
                log.info("executed %s in %.1fs", rel, seconds)
                continue
            # not cached: the next build runs it again
            out[nb] = dst.parent.with_name(f"{nb.stem}.unexecuted") / nb.name
            missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", p.stderr)
            if missing:   # an optional extra this environment lacks: show the notebook as written, and say why
                log.info("%s needs the module %s, not installed here: its page shows it without outputs", rel, missing.group(1))
                shown_as_written(nb, out[nb], f"The docs were built without the `{missing.group(1)}` module this notebook "
                                              "needs (an optional extra), so it is shown without outputs.")
            else:
                log.warning("%s failed when the docs build ran it (its page shows it without outputs):\n%s", rel,
                            "\n".join(l for l in p.stderr.splitlines() if "[IPKernelApp]" not in l)[-3000:])
                shown_as_written(nb, out[nb], "This notebook failed when the docs were built, so it is shown without outputs.")
    used = set(out.values())
    for old in list(EXECUTED.rglob("*.ipynb")):   # copies no notebook uses any more
        if old not in used:
            old.unlink()
            with contextlib.suppress(OSError): old.parent.rmdir()
    return out


# ---------------------------------------------------------------- mkdocs events

def _generated(config, files: Files, src_uri: str, content: str | None = None, abs_src_path: str | None = None,
               inclusion=InclusionLevel.UNDEFINED) -> None:
    if files.get_file_from_path(src_uri) is not None:
        files.remove(files.get_file_from_path(src_uri))
    files.append(File.generated(config, src_uri, content=content, abs_src_path=abs_src_path, inclusion=inclusion))


@event_priority(100)   # before mkdocs-jupyter, so it renders the notebooks added here
def on_files(files: Files, config) -> Files:
    # the notebooks: the module documentation, with the outputs of a run made now (see executed_notebooks)
    for nb, shown in executed_notebooks(notebooks()).items():
        _generated(config, files, "modules/" + nb.relative_to(NBS).as_posix(), abs_src_path=str(shown))
    # reference pages made from the code
    pages = {"reference/cli.md": cli_page, "reference/config.md": config_page, "reference/catalog.md": catalog_page,
             "reference/manifest-schema.md": manifest_page, "reference/exports.md": exports_page,
             "reference/api/index.md": api_index_page}
    for m in api_modules():
        pages[f"reference/api/{m}.md"] = (lambda m=m: api_module_page(m))
    for src_uri, make in pages.items():
        _generated(config, files, src_uri, content=make())
    # the job protocol for other languages, with the files it links to (a linked folder gets a listing page)
    if (PROTOCOL_DIR / "PROTOCOL.md").is_file():
        for p in sorted(PROTOCOL_DIR.rglob("*")):
            rel = p.relative_to(PROTOCOL_DIR)
            if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts): continue
            if p.is_dir():
                if not (p / "index.md").exists() and not (p / "README.md").exists():
                    _generated(config, files, f"protocol/{rel.as_posix()}/index.md", content=listing_page(p),
                               inclusion=InclusionLevel.NOT_IN_NAV)
                continue
            inclusion = InclusionLevel.NOT_IN_NAV if p.suffix == ".md" and rel.as_posix() != "PROTOCOL.md" else InclusionLevel.UNDEFINED
            _generated(config, files, "protocol/" + rel.as_posix(), abs_src_path=str(p), inclusion=inclusion)
    else:
        _generated(config, files, "protocol/PROTOCOL.md", content=PROTOCOL_PENDING)
        log.info("protocol/PROTOCOL.md is not written yet: the site shows a stand-in")
    # stand-ins for pages still being written
    for src_uri, (title, text) in PENDING.items():
        if files.get_file_from_path(src_uri) is None:
            log.info("%s is not written yet: the site shows a stand-in", src_uri)
            depth = "../" * src_uri.count("/")
            _generated(config, files, src_uri, content=f"# {title}\n\n!!! note \"Being written\"\n    {text.replace('](', '](' + depth)}\n")
    return files


def notebooks() -> list[Path]:
    "The notebooks under nbs/, in order: the modules, then the operational ones."
    return sorted((nb for nb in NBS.rglob("*.ipynb") if not any(p in SKIP_DIRS for p in nb.parts)),
                  key=lambda nb: (len(nb.relative_to(NBS).parts), nb.relative_to(NBS).as_posix()))


def _nav_title(nb: Path) -> str:
    rel = nb.relative_to(NBS)
    if len(rel.parts) > 1: return f"{' / '.join(rel.parts[:-1])}: {nb.stem}"
    num, _, name = nb.stem.partition("_")
    return f"{num} {name}" if num.isdigit() else nb.stem


def _fill_nav(nav, title: str, entries: list) -> bool:
    for item in nav or []:
        if isinstance(item, dict):
            for k, v in item.items():
                if k == title and isinstance(v, list):
                    item[k] = [e for e in v if isinstance(e, str) and e.endswith("index.md")] + entries
                    return True
                if isinstance(v, list) and _fill_nav(v, title, entries): return True
    return False


def on_config(config):
    # the notebooks and the API pages are listed in the navigation from what exists, so a new module
    # or notebook is documented by the next build without touching mkdocs.yml
    nav = config.get("nav")
    if not _fill_nav(nav, "Notebooks", [{_nav_title(nb): "modules/" + nb.relative_to(NBS).as_posix()} for nb in notebooks()]):
        log.warning("mkdocs.yml: the nav has no 'Notebooks' section for the notebooks")
    if not _fill_nav(nav, "Python API", [{m: f"reference/api/{m}.md"} for m in api_modules()]):
        log.warning("mkdocs.yml: the nav has no 'Python API' section for the module pages")
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
    return rewrite_links(markdown, page.file.src_uri)


def on_nav(nav, config, files):
    # mkdocs-jupyter wraps each notebook in a NotebookFile that looks its source path up from the docs
    # folder; the notebooks added above live in nbs/, so hand it their real path.
    for f in files:
        inner = getattr(f, "file", None)
        if inner is not None and f.abs_src_path is None and inner.abs_src_path is not None:
            f.abs_src_path = inner.abs_src_path
    return nav


# mkdocs-jupyter's page template loads MathJax and Mermaid from public CDNs (an empty `<script src="">`
# when no MathJax URL is set, and a module script importing Mermaid from a CDN). The notebooks use
# neither, and the site must work offline: drop both blocks.
_CDN_BLOCKS = [
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S),
    re.compile(r"<script type=\"module\">\s*document\.addEventListener\(\"DOMContentLoaded\", async \(\) => \{\s*"
               r"const diagrams = document\.querySelectorAll\(\"\.jp-Mermaid.*?</script>", re.S),
]


def on_post_page(output: str, page, config) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        for block in _CDN_BLOCKS:
            output, n = block.subn("", output)
            if n == 0:
                log.warning("%s: mkdocs-jupyter's %s block was not found: check the page for CDN references",
                            page.file.src_uri, "MathJax" if block is _CDN_BLOCKS[0] else "Mermaid")
    return output


def on_post_build(config):
    # the page's download link serves the notebook as committed (its hidden set-up cells included), not the
    # copy the page was made from
    site = Path(config["site_dir"])
    for nb in notebooks():
        rel = nb.relative_to(NBS)
        target = site / "modules" / rel.parent / nb.stem / nb.name
        if target.is_file(): target.write_bytes(nb.read_bytes())


def passed_in_docs_build() -> list[Path]:
    """The notebooks this build has run and kept, unchanged since, with the same package in the same environment: each
    run passed the way `nbdev-test` runs them (execnb's shell in the notebook's folder, IN_TEST set, the `tst_flags`
    cells skipped), so `make nbtest` need not run them again (CI builds the docs first; `make test` alone runs them all)."""
    key = _package_hash()
    return [nb for nb in notebooks() if not not_executed_reason(nb) and executed_copy(nb, key).is_file()]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "execute":
    execute_notebook(Path(sys.argv[2]), Path(sys.argv[3]))
elif __name__ == "__main__" and sys.argv[1:] == ["skip-file-re"]:
    # for `nbdev-test --skip-file-re`: nbdev-test's own default (names starting with _ or .) and the notebooks the docs
    # build has already run as they are now
    done = passed_in_docs_build()
    if done:
        print(f"nbtest: not run again, the docs build ran them as they are now: {' '.join(nb.name for nb in done)}",
              file=sys.stderr)
    print("^([_.]" + "".join(f"|{re.escape(nb.name)}$" for nb in done) + ")")
