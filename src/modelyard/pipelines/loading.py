"""Finding a pipeline from the command line (`FILE.py:FUNC` or `package.module:FUNC`) and reading
`--param key=value` pairs as the parameter types the pipeline declares."""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.pipelines.dsl import Pipeline
from modelyard.pipelines.entrypoint import import_code

FILE_MODULE_PREFIX = "_modelyard_file_"  # module name under which a pipeline file is loaded (see CodeRef)


def load_pipeline(target: str) -> Pipeline:
    """The `@pipeline` object named by `FILE.py:FUNC` or `module:FUNC`."""
    source, sep, name = target.rpartition(":")
    if not sep or not source or not name:
        raise InvalidArgument(f"{target!r} should be FILE.py:FUNCTION or package.module:FUNCTION.")
    if source.endswith(".py") or "/" in source or Path(source).is_file():
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise InvalidArgument(f"No such file: {source!r}.")
        module = FILE_MODULE_PREFIX + re.sub(r"\W", "_", path.stem)
        ref: dict[str, str | None] = {"module": module, "qualname": name, "file": str(path)}
        sys.modules.pop(module, None)  # load the file as it is now, not as first imported
    else:
        ref = {"module": source, "qualname": name, "file": None}
    try:
        found = import_code(ref)
    except AttributeError as exc:
        if name not in str(exc):
            raise InvalidArgument(f"Cannot import {source!r}: {_where(exc)}") from None
        raise InvalidArgument(f"{source!r} has no {name!r}.") from None
    except ImportError as exc:
        raise InvalidArgument(f"Cannot import {source!r}: {exc}") from None
    except Exception as exc:  # the file's own code failed while loading: say where, without our frames
        raise InvalidArgument(f"Cannot import {source!r}: {_where(exc)}") from None
    if not isinstance(found, Pipeline):
        raise InvalidArgument(f"{target!r} is a {type(found).__name__}, not a @pipeline function.")
    return found


def parse_params(pipeline: Pipeline, pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs typed by the pipeline's parameter kinds (lists and dicts as JSON)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgument(f"--param {pair!r} should be KEY=VALUE.")
        spec = pipeline.params.get(key)
        if spec is None:
            known = ", ".join(pipeline.params) or "none"
            raise InvalidArgument(
                f"Pipeline {pipeline.name!r} has no parameter {key!r}; its parameters: {known}."
            )
        values[key] = _typed(raw, spec.kind, key)
    return values


def _typed(raw: str, kind: str, key: str) -> Any:
    try:
        if kind == "str":
            return raw
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind in ("list", "dict"):
            value = json.loads(raw)
            if not isinstance(value, list if kind == "list" else dict):
                raise ValueError
            return value
    except ValueError:
        example = {"list": "[1, 2]", "dict": '{"a": 1}', "bool": "true"}.get(kind, "")
        hint = (
            f" (JSON, e.g. {example})"
            if kind in ("list", "dict")
            else f" (e.g. {example})"
            if example
            else ""
        )
        raise InvalidArgument(f"--param {key}={raw!r}: {key} is {kind}{hint}.") from None
    try:  # undeclared type: JSON when it parses, else the text itself
        return json.loads(raw)
    except ValueError:
        return raw


def _where(exc: BaseException) -> str:
    """`Type: message (file:line)` for the innermost frame outside Modelyard."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/modelyard/" not in f.filename]
    place = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{place}"
