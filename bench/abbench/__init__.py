"""The artifact_bus benchmark harness (issue 5): every system, every workload, one run, same data, same disk.

    python bench/run.py [--quick] [--only NAMES] [--systems NAMES] [--json PATH] [--reps N]
                        [--catalog-artifacts N] [--ingest-mem-mb N] [--workdir DIR] [--keep]

Workloads (`--only`, comma-separated): small, concurrent, large, memory, catalog, ingest-mem, daemon, import.
The GROUP BY query is measured at the end of `small` and `large`, over what they stored.

Systems (`--systems`, comma-separated): floor, protocol, duckdb, delta, iceberg, ducklake, artifact_bus,
artifact_bus_batch.

Prints a fixed-width table (workload, system, median, min, ratio vs the floor, target, met?) and writes
every figure, with the machine and versions, as JSON (default bench/results/latest.json) and the same
table as Markdown beside it (latest.md). Nothing is asserted: a missed target is reported, not raised.

The parts: `common` (names, sizes, probes), `systems` (the writers compared), `writes` (small, large and
the query after them), `concurrent`, `memory` (one large store; ingest memory), `catalog`, `daemon`,
`imports` (the producer's import time), `machine`, `report` (rows and tables) and `__main__` (the
command line). The time budget of a workload is a parameter, set once per run from the mode.
"""
