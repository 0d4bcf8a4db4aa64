"""The package is typed: it ships `py.typed`, and every public callable of `artifact_bus` has its parameters
and its return annotated (mypy, run by `make typecheck`, checks that the annotations hold)."""

from __future__ import annotations

import inspect
from importlib import resources

import pytest

import artifact_bus

PUBLIC = [n for n in dir(artifact_bus) if not n.startswith("_") and inspect.isfunction(getattr(artifact_bus, n))]


def test_py_typed_ships():
    assert resources.files("artifact_bus").joinpath("py.typed").is_file()


def test_public_functions_are_listed():
    assert {
        "submit",
        "job",
        "batch",
        "ingest",
        "export",
        "catalog",
        "flush",
        "requeue",
        "read",
        "runs",
        "compare",
    } <= set(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_is_annotated(name):
    sig = inspect.signature(getattr(artifact_bus, name))
    missing = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert not missing, f"artifact_bus.{name}: parameters without a type: {', '.join(missing)}"
    assert sig.return_annotation is not inspect.Signature.empty, f"artifact_bus.{name}: no return type"
