# artifact_bus: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ROOT   ?= data/bus

.PHONY: install install-all install-duckdb2 demo test lint typecheck check-nbdev nbtest pytest test-duckdb2 test-ts docs test-browser bench bench-quick bench-browse clean-data clean

$(STAMP): pyproject.toml requirements/dev.txt requirements/common.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) docs/requirements.txt
	$(BIN)/python -m pip install --quiet -r docs/requirements.txt
	touch $(DOCS_STAMP)

## Build the docs site into _site/, offline; --strict: a broken link or an undocumented fact fails the build.
## The notebook pages show the outputs of a run of each notebook, made here and kept in .cache/ until the
## notebook or the package changes (cold: a minute or two; then seconds). A notebook that fails fails the build.
## Everything `make docs` and `make test` use, installed at once (CI installs this first).
install-all: $(STAMP) $(DOCS_STAMP) $(CLICKHOUSE_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d _site

## Install, then run the main job end to end on the embedded default (./data/bus, a DuckDB file, no server).
demo: $(STAMP)
	$(BIN)/python examples/backtest_demo.py --root $(ROOT) --runs 3

## Install, then check the notebooks and the package agree and run every test.
test: $(STAMP) lint check-nbdev typecheck nbtest pytest

## Lint the notebooks (the source), the package, the tests and the benchmarks (configuration: [tool.ruff] in
## pyproject.toml); `ruff format nbs tests bench` lays them out as the check expects. The generated package
## follows the notebooks' layout, so only its lint is checked.
lint: $(STAMP)
	$(BIN)/ruff format --check nbs tests bench
	$(BIN)/ruff check nbs artifact_bus tests bench

## Type-check the package (configuration: [tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

check-nbdev: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@git diff --exit-code --stat -- artifact_bus nbs || \
	  (echo "error: notebooks and package disagree (or notebooks are not clean): run nbdev-export and nbdev-clean, then commit" >&2; exit 1)
	@test -z "$$(git status --porcelain --untracked-files=all -- artifact_bus nbs)" || \
	  (git status --porcelain --untracked-files=all -- artifact_bus nbs; echo "error: nbdev-export produced untracked files" >&2; exit 1)

CLICKHOUSE_STAMP := $(VENV)/.clickhouse-installed

## The `clickhouse` extra at exact versions (chdb is large): only for the tests that run real ClickHouse SQL.
$(CLICKHOUSE_STAMP): $(STAMP) requirements/clickhouse.txt
	$(BIN)/python -m pip install --quiet -r requirements/clickhouse.txt
	touch $(CLICKHOUSE_STAMP)

## The notebooks' examples (nbdev-test), less those the docs build has run as they are now, with this package in this
## venv (`make docs` runs each notebook the way nbdev-test does and keeps the runs that passed; CI builds the docs first).
nbtest: $(STAMP) $(DOCS_STAMP) $(CLICKHOUSE_STAMP)
	skip=$$($(BIN)/python docs/hooks.py skip-file-re) && $(BIN)/nbdev-test --n-workers 2 --skip-file-re "$$skip"

## The test modules in parallel processes (pytest-xdist), each module whole in one process (--dist loadfile) so its
## servers, browser and bus start once; the slowest tests are listed at the end. PYTEST_WORKERS=0: one process; auto: one per core.
PYTEST_WORKERS ?= auto
PYTEST_ARGS    := -q -n $(PYTEST_WORKERS) --dist loadfile --durations=10

pytest: $(STAMP) $(DOCS_STAMP) $(CLICKHOUSE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests

# The second DuckDB line: the newest duckdb 2.x (what a plain `pip install artifact_bus` resolves), in a venv of its own.
VENV2  := .venv-duckdb2
BIN2   := $(VENV2)/bin
STAMP2 := $(VENV2)/.installed

$(STAMP2): pyproject.toml requirements/duckdb2.txt requirements/common.txt requirements/clickhouse.txt
	test -x $(BIN2)/python || $(PYTHON) -m venv $(VENV2)
	$(BIN2)/python -m pip install --quiet --upgrade pip
	$(BIN2)/python -m pip install --quiet -r requirements/duckdb2.txt -r requirements/clickhouse.txt -e '.[dev]'
	touch $(STAMP2)

install-duckdb2: $(STAMP2)

## The notebooks and the tests again on duckdb 2.x: every notebook but the DuckLake one, and every test module that
## depends on duckdb's version (not the scale-out ones: their extension wheels exist for duckdb 1.5.5 only; not those
## marked one_duckdb_line, whose list and reasons are in tests/conftest.py).
test-duckdb2: $(STAMP2)
	@$(BIN2)/python -c "import duckdb, sys; print('duckdb', duckdb.__version__); sys.exit(duckdb.__version__.split('.')[0] != '2')" || \
	  (echo "error: $(VENV2) does not hold duckdb 2.x: delete it and run make test-duckdb2 again" >&2; exit 1)
	$(BIN2)/nbdev-test --n-workers 2 --skip-file-re '^([_.]|15_lake)'
	$(BIN2)/python -m pytest $(PYTEST_ARGS) -m 'not scale_out and not one_duckdb_line' tests

## Install the TypeScript producer from its lock file, build it, and run its tests (node's test runner).
test-ts:
	cd clients/typescript && npm ci --no-audit --no-fund && npm run build && npm test

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

## Benchmark artifact_bus against the write+fsync floor and its peers: the full sizes, under 10 minutes, plus the
## growth workload's stores up to 1,000,000 artifacts (8 to 13 minutes more on a busy machine; the first run also
## creates the seeded files it keeps in bench/results/growth-pool/). `ARGS=--only growth` runs one workload.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --json bench/results/latest.json $(ARGS)

## The same, smaller and once: a few minutes (the growth workload, up to 100,000 artifacts, about 2 of them).
bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --quick --json bench/results/quick.json $(ARGS)

## The bus browser's tests alone, in a real browser too (needs Debian's chromium).
test-browser: $(STAMP)
	BROWSER_TESTS=required $(BIN)/python -m pytest -q tests/test_browser.py tests/test_browse_widgets.py

## How fast the bus browser filters on 10,000 artifacts (ARGS=--browser adds chromium on the Voila page).
bench-browse: $(STAMP)
	$(BIN)/python bench/browse_filter.py $(ARGS)

clean-data:
	rm -rf $(ROOT)

clean: clean-data
	rm -rf $(VENV) $(VENV2) _site .cache
