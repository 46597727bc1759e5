"""What flows between steps: the kinds of inputs and outputs, and when one kind may feed another.

Annotate step arguments and return values with plain Python types (`int`, `float`, `str`, `bool`, `list`,
`dict`), with real data types (`numpy.ndarray`, `pandas.DataFrame`, `pathlib.Path`) or with the markers below.
The markers only say what the value is for; at run time a `Dataset` is whatever the step returned (a
DataFrame, an Arrow table, an array), a `Model` is the model object itself.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any


class Kind:
    """Annotation metadata naming what a value is for (the markers below carry one)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Kind({self.name!r})"


# The markers are `Any` to type checkers, so `data: Dataset` can be used as the DataFrame it is.
Dataset = Annotated[Any, Kind("dataset")]
"""Tabular or array data (pandas, Arrow, numpy). Stored as Parquet or .npy."""
Model = Annotated[Any, Kind("model")]
"""A trained model, stored in Modelyard's model format (any installed flavor)."""
Metrics = Annotated[Any, Kind("metrics")]
"""A dict of metric name → number; stored as JSON and logged as the step run's metrics."""
File = Annotated[Any, Kind("file")]
"""A path to a file or folder the step wrote; the next step gets a local copy as a `Path`."""


VALUE_KINDS = ("int", "float", "bool", "str", "list", "dict")
ARTIFACT_KINDS = ("dataset", "model", "metrics", "file")


def kind_of(annotation: Any) -> str:
    """The kind for a type annotation: one of VALUE_KINDS, ARTIFACT_KINDS, "none" or "any"."""
    if annotation is None or annotation is type(None):
        return "none"
    if annotation is Any or annotation is typing.Any or annotation is inspect.Parameter.empty:
        return "any"
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        kinds = {kind_of(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else "any"
    if origin is typing.Annotated:
        named = [m.name for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Kind)]
        return named[0] if named else kind_of(typing.get_args(annotation)[0])
    if origin is not None:
        annotation = origin
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "bool"
        for kind, cls in (("int", int), ("float", float), ("str", str), ("list", list), ("dict", dict)):
            if issubclass(annotation, cls):
                return kind
        if issubclass(annotation, Path):
            return "file"
        name = f"{annotation.__module__}.{annotation.__qualname__}"
        if name in _DATA_TYPES:
            return "dataset"
    return "any"


_DATA_TYPES = {
    "numpy.ndarray",
    "pandas.core.frame.DataFrame",
    "pandas.DataFrame",
    "pyarrow.lib.Table",
    "pyarrow.Table",
}


def element_kind(annotation: Any) -> str:
    """For `list[X]`: X's kind (what a fan-in collects); "any" otherwise."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args:
        return kind_of(args[0])
    return "any"


def compatible(produced: str, expected: str) -> bool:
    """Whether a value of kind `produced` may be passed where `expected` is declared."""
    if "any" in (produced, expected) or produced == expected:
        return True
    return (produced, expected) in {
        ("int", "float"),
        ("metrics", "dict"),
        ("dict", "metrics"),
        ("str", "file"),
    }


def value_kind(value: Any) -> str:
    """The kind of a literal argument given at build time."""
    if isinstance(value, bool):
        return "bool"
    for kind, cls in (("int", int), ("float", float), ("str", str), ("list", (list, tuple)), ("dict", dict)):
        if isinstance(value, cls):
            return kind
    return "any"
