"""Plumbing shared by every MLflow endpoint: reading a request's fields, writing JSON, and errors in the
shape and with the codes the MLflow client understands.

MLflow's client sends proto3 JSON: POST fields in a JSON body, GET fields in the query string, int64s as
numbers (or strings from other clients), doubles as numbers or "NaN"/"Infinity"/"-Infinity". We read
those by hand instead of with pydantic models so that every malformed field becomes a 400 that names it.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

import pydantic_core
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from modelyard.errors import InvalidArgument, ModelyardError
from modelyard.server.routes import store
from modelyard.store.base import TrackingStore

Store = Annotated[TrackingStore, Depends(store)]

# Our error codes the MLflow client does not know, as the MLflow code it acts on. Codes missing here
# (RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE, ...) are already MLflow codes and pass unchanged.
_MLFLOW_CODES: dict[str, tuple[str, int]] = {
    "CONFLICT": ("INVALID_PARAMETER_VALUE", 400),  # MLflow's answer to "param already has another value"
    "GATE_FAILED": ("INVALID_STATE", 400),  # a promotion the model's gates refuse; the message names the rule
    "PAYLOAD_TOO_LARGE": ("RESOURCE_LIMIT_EXCEEDED", 413),
    "SCHEMA_OUTDATED": ("SERVICE_UNDER_MAINTENANCE", 503),
}


class NotImplementedInModelyard(ModelyardError):
    """An MLflow endpoint we route but cannot serve (yet); MLflow's client knows NOT_IMPLEMENTED."""

    code = "NOT_IMPLEMENTED"
    http_status = 501


_TEXT = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""  # a string as Python's repr() writes it
_WORD = r"([^\s;]+?)"
# The stores' not-found and conflict messages in the words of MLflow's SQL stores (clients match on some,
# e.g. mlflow.optuna on "Run with id=... not found"). Each pattern is the start of the store's message.
_MLFLOW_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"No run with id {_TEXT}\."), "Run with id={0} not found"),
    (re.compile(rf"No experiment with id {_TEXT}\."), "No Experiment with id={0} exists"),
    (
        re.compile(rf"An active experiment named {_TEXT} already exists"),
        "Experiment(name={0}) already exists.",
    ),
    (re.compile(rf"Run {_WORD} has no tag {_TEXT}\."), "No tag with name: {1} in run with id {0}"),
    (
        re.compile(rf"Experiment {_WORD} has no tag {_TEXT}\."),
        "No tag with name: {1} in experiment with id {0}",
    ),
    (
        re.compile(rf"Run {_WORD} is deleted;"),
        "The run {0} must be in the 'active' state. Current state is deleted.",
    ),
    (
        re.compile(rf"Experiment {_WORD} \({_TEXT}\) is deleted; restore it to add runs\."),
        "The experiment {0} must be in the 'active' state. Current state is deleted.",
    ),
    (
        re.compile(
            rf"Param {_TEXT} of run {_WORD} is already {_TEXT}; params are immutable, so the new value {_TEXT}"
        ),
        "Changing param values is not allowed. Param with key='{0}' was already logged with value='{2}' for "
        "run ID='{1}'. Attempted logging new value '{3}'.",
    ),
    (re.compile(rf"No registered model named {_TEXT}\."), "Registered Model with name={0} not found"),
    (
        re.compile(rf"A registered model named {_TEXT} exists already\."),
        "Registered Model (name={0}) already exists.",
    ),
    (
        re.compile(rf"Model {_TEXT} has no version {_WORD}\."),
        "Model Version (name={0}, version={1}) not found",
    ),
    (re.compile(rf"Model {_TEXT} has no alias {_TEXT}\."), "Registered model alias {1} not found."),
]


def mlflow_message(message: str) -> str:
    """`message` in MLflow's words when it is one of the stores' not-found or conflict messages."""
    for pattern, template in _MLFLOW_MESSAGES:
        match = pattern.match(message)
        if match is not None:
            values = [ast.literal_eval(g) if g[:1] in "'\"" else g for g in match.groups()]
            return template.format(*values)
    return message


def error_reply(exc: ModelyardError) -> Response:
    code, status = _MLFLOW_CODES.get(exc.code, (exc.code, exc.http_status))
    return reply({"error_code": code, "message": mlflow_message(exc.message)}, status)


class MlflowRoute(APIRoute):
    """A route whose `ModelyardError`s leave as MLflow error bodies (the app's handler would pass our
    own codes through, some of which MLflow's client turns into a generic INTERNAL_ERROR)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ModelyardError as exc:
                return error_reply(exc)

        return handle


def reply(body: dict[str, Any], status: int = 200) -> Response:
    """JSON without NaN tokens: callers turn special floats into strings first (see `float_out`)."""
    return Response(
        json.dumps(body, separators=(",", ":"), allow_nan=False),
        status_code=status,
        media_type="application/json",
    )


def float_out(value: float) -> float | str:
    """A double as proto3 JSON writes it: JSON has no NaN/Infinity tokens, so those travel as strings."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Params:
    """The fields of one MLflow request, by their proto names (the camelCase JSON names work too)."""

    def __init__(self, fields: dict[str, Any], repeated: dict[str, list[str]] | None = None) -> None:
        self._fields, self._repeated = fields, repeated or {}

    def raw(self, name: str) -> Any:
        value = self._fields.get(name)
        return self._fields.get(_camel(name)) if value is None else value

    def string(
        self, name: str, default: str | None = None, *, required: bool = False, numbers: bool = False
    ) -> str | None:
        """A string field. Anything else is refused as MLflow's server refuses it (a proto string field
        given a number); `numbers`: a JSON number is read as its text (experiment ids)."""
        value = self.raw(name)
        if value is None or value == "":
            if required:
                raise InvalidArgument(f"Missing value for required parameter {name!r}.")
            return default
        if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # an experiment id sent as a number is still an id
        if not isinstance(value, str):
            raise InvalidArgument(invalid_value(name, value))
        return value

    def required(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None
        return value

    def experiment_id(self, name: str = "experiment_id", default: str | None = None) -> str:
        value = self.string(name, default, required=default is None, numbers=True)
        assert value is not None
        return experiment_id(value, name)

    def experiment_ids(self, name: str = "experiment_ids") -> list[str]:
        return [experiment_id(v, name) for v in self.strings(name)]

    def run_id(self) -> str:
        """MLflow sends the run id as `run_id` and, for older servers, `run_uuid`."""
        rid = self.string("run_id") or self.string("run_uuid")
        if rid is None:
            raise InvalidArgument("Missing value for required parameter 'run_id'.")
        return rid

    def integer(self, name: str, default: int | None = None) -> int | None:
        return as_int(self.raw(name), name, default)

    def strings(self, name: str) -> list[str]:
        """A repeated string field: a JSON list, or the repeated `name=` pairs of a query string."""
        if name in self._repeated:
            return self._repeated[name]
        value = self.raw(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise InvalidArgument(f"Parameter {name!r} must be a list of strings.")
        return [str(v) for v in value]

    def messages(self, name: str) -> list[Params]:
        """A repeated message field (e.g. log-batch's `metrics`), each as Params."""
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise InvalidArgument(f"Parameter {name!r} must be a list of objects.")
        return [Params(v) for v in value]

    def message(self, name: str) -> Params | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidArgument(f"Parameter {name!r} must be an object.")
        return Params(value)

    def number(self, name: str) -> float:
        """A required double; "NaN", "Infinity" and "-Infinity" are the JSON spellings of the specials. A
        JSON number must be finite, as MLflow's own server (protobuf) wants it: one past the float range
        (1e400) is an error, not infinity, and so are the bare NaN/Infinity tokens a lenient parser reads."""
        value = self.raw(name)
        if value is None:
            raise InvalidArgument(f"Missing value for required parameter {name!r}.")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidArgument(f"Parameter {name!r} must be a number, got {value!r}.")
        try:
            number = float(value)
        except ValueError:
            raise InvalidArgument(f"Parameter {name!r} must be a number, got {value!r}.") from None
        except OverflowError:  # an integer past the float range
            number = math.inf
        if math.isfinite(number) or isinstance(value, str):
            return number
        raise InvalidArgument(
            f"Parameter {name!r} is a number past the float range (about ±1.8e308) or a bare NaN/Infinity: "
            'send a value within the range, or NaN and infinities as the strings "NaN", "Infinity", "-Infinity".'
        )

    def enum(self, name: str, names: tuple[str, ...], default: str) -> str:
        """A proto enum field, sent by name (or by its number, 1-based in MLflow's protos)."""
        value = self.raw(name)
        if value is None or value == "":
            return default
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(names):
            return names[value - 1]
        if isinstance(value, str) and value.upper() in names:
            return value.upper()
        raise InvalidArgument(
            f"Invalid value {value!r} for parameter {name!r}: use one of {', '.join(names)}."
        )


def invalid_value(name: str, value: Any) -> str:
    """MLflow's server's words for a field of the wrong type."""
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return (
        f"Invalid value {shown} for parameter '{name}' supplied:  Hint: Value was of type "
        f"'{type(value).__name__}'. See the API docs for more information about request parameters."
    )


_INT64 = range(-(2**63), 2**63)
_INT_TEXT = re.compile(r"\s*-?[0-9]{1,25}\s*")
_ID_TEXT = re.compile(r"[0-9]{1,19}")


def as_int(value: Any, name: str, default: int | None = None) -> int | None:
    """A proto int64: a JSON number, or a decimal string (the proto3 JSON spelling of int64)."""
    if value is None or value == "":
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _INT_TEXT.fullmatch(value)
    ):
        number = int(value)
    if number is None or number not in _INT64:  # past int64 no database column holds it
        raise InvalidArgument(f"Parameter {name!r} must be a 64-bit integer, got {value!r}.")
    return number


def experiment_id(value: str, name: str = "experiment_id") -> str:
    """An experiment id as the store wants it: a decimal integer that fits its int64 column."""
    if not (_ID_TEXT.fullmatch(value) and int(value) in _INT64):
        raise InvalidArgument(f"Invalid {name} {value!r}: experiment ids are integers such as '1'.")
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _check_text(fields: dict[str, Any]) -> None:
    """Refuse NUL (PostgreSQL's text cannot hold it) here for every backend alike, instead of a 500 from the
    database driver. (Lone UTF-16 surrogates, which UTF-8 cannot encode, the JSON parser refuses.)"""
    if any("\0" in text for text in _strings(fields)):
        raise InvalidArgument("The request body holds a NUL character (\\u0000) in a string.")


async def read_params(request: Request) -> Params:
    """GET fields come from the query string, every other method's from the JSON body."""
    if request.method == "GET":
        repeated: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            if "\0" in value:
                raise InvalidArgument(f"Query parameter {key!r} holds a NUL character.")
            repeated.setdefault(key, []).append(value)
        return Params({k: v[0] for k, v in repeated.items()}, repeated)
    body = await request.body()
    if not body.strip():
        return Params({})
    try:  # the parser of /api/v1's bodies (pydantic's): its nesting limit makes a deep body a clear 400
        fields = pydantic_core.from_json(body)
    except ValueError as exc:
        raise InvalidArgument(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(fields, dict):
        raise InvalidArgument("The request body must be a JSON object.")
    if b"\\u0000" in body:  # an escape that decodes to text no database stores
        _check_text(fields)
    return Params(fields)


Fields = Annotated[Params, Depends(read_params)]
