"""artifact_bus: producers submit Parquet jobs, one writer ingests them into a DuckDB catalog, readers read snapshots.

The top-level names are loaded on first use (PEP 562), so a producer that runs
`from artifact_bus import submit` imports the producer side only: pyarrow, the protocol and
`submit`, never duckdb or the writer (ingest, catalog, export, quarantine, ...).

Seven API functions share their name with the module that defines them: `submit`, `ingest`,
`catalog`, `export`, `requeue`, `retire` and `gc`. On the package, that name is always the function, even
after the module itself was imported (`import artifact_bus.catalog` binds the function on the package, as
`from artifact_bus import catalog` does). To reach a module, import from it
(`from artifact_bus.export import load_exports`) or use `importlib.import_module("artifact_bus.catalog")`.
"""
__version__ = "0.1.0"

import importlib
import sys
import types
from typing import TYPE_CHECKING

# name -> the module that defines it; nothing here is imported until it is asked for
_API = {
    **dict.fromkeys(["BusError", "BusUnavailable", "ConfigError", "KindError", "ManifestError", "NotFound",
                     "SchemaMismatch", "WriterBusy", "load_config"], "core"),
    **dict.fromkeys(
        ["Batch", "Job", "NewKindWarning", "Receipt", "SpooledWarning", "batch", "flush", "job", "submit"], "submit"
    ),
    **dict.fromkeys(["Report", "ingest"], "ingest"),
    **dict.fromkeys(["TimeTravelUnavailable", "catalog"], "catalog"),
    **dict.fromkeys(["compare", "read", "read_relation", "runs", "versions"], "reader"),
    "export": "export",
    "requeue": "requeue",
    "retire": "retire",
    "gc": "gc",
}

__all__ = sorted(_API)

if TYPE_CHECKING:   # for type checkers and the docs' API index, in this order
    from artifact_bus.core import (BusError, BusUnavailable, ConfigError, KindError, ManifestError, NotFound,
                                   SchemaMismatch, WriterBusy, load_config)
    from artifact_bus.submit import Batch, Job, NewKindWarning, Receipt, SpooledWarning, batch, flush, job, submit
    from artifact_bus.ingest import Report, ingest
    from artifact_bus.catalog import TimeTravelUnavailable, catalog
    from artifact_bus.reader import compare, read, read_relation, runs, versions
    from artifact_bus.export import export
    from artifact_bus.requeue import requeue
    from artifact_bus.retire import retire
    from artifact_bus.gc import gc


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*__all__, "__version__"])


class _Package(types.ModuleType):
    "The package's module type: an API function keeps its name when the module of the same name is imported."

    def __setattr__(self, name, value):
        # the import system binds a submodule on its package once it has run; for `submit`, `ingest`, `catalog`,
        # `export`, `requeue`, `retire` and `gc` bind the function that module defines instead, so the name never flips
        if (_API.get(name) == name and isinstance(value, types.ModuleType)
                and value.__name__ == f"{__name__}.{name}" and hasattr(value, name)):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
