"""Request bodies of the three protocols decoded into payloads, and model outputs encoded as their responses.

- Open Inference Protocol v2 (`POST /v2/models/{m}/infer`): typed tensors in, typed tensors out; JSON, or
  the binary tensor data extension (a JSON header of `Inference-Header-Content-Length` bytes, then data).
- KServe v1 (`POST /v1/models/{m}:predict`): `{"instances": [...]}` (or `"inputs"`) → `{"predictions": [...]}`.
- MLflow-style `POST /invocations`: `dataframe_split`, `dataframe_records`, `instances` or `inputs` (JSON), or
  a CSV table → `{"predictions": ...}`.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic_core

from modelyard.errors import InvalidArgument
from modelyard.models.signature import to_numpy
from modelyard.schemas.models import ModelSignature, Schema
from modelyard.serving import payload as payloads
from modelyard.serving.errors import UnsupportedMediaType
from modelyard.serving.payload import Payload
from modelyard.serving.tensors import binary_size, datatype_of, decode_tensor, encode_tensor

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def loads(body: bytes) -> Any:
    """pydantic-core's JSON parser: ~8x faster than `json.loads` on a row of floats (NaN and Infinity
    accepted, as `json.loads` does)."""
    if not body:
        raise InvalidArgument("The request has no body; send a JSON object.")
    try:
        return pydantic_core.from_json(body)
    except ValueError as exc:
        raise InvalidArgument(f"The request body is not valid JSON: {exc}.") from None


def dumps(value: Any) -> bytes:
    """Compact JSON through pydantic-core (~6x faster than `json`); numpy values and arrays as numbers and
    lists, NaN and Infinity as `json.dumps` writes them."""
    try:
        return pydantic_core.to_json(value, fallback=_json_default)
    except pydantic_core.PydanticSerializationError:  # bytes that are not UTF-8: written with U+FFFD
        return json.dumps(value, separators=(",", ":"), default=_json_default).encode()


def new_request_id() -> str:
    """A request id unique to this server's lifetime and across servers: a random prefix per process and a
    counter (32 hex digits, like a UUID's; `uuid4()` reads the kernel's random source on every call)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


_ID_PREFIX, _ID_COUNTER = uuid.uuid4().hex[:16], itertools.count()


def _object(body: bytes, example: str) -> Mapping[str, Any]:
    value = loads(body)
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"The request body must be a JSON object, e.g. {example}.")
    return value


# -- Open Inference Protocol v2 ------------------------------------------------------------------------------


@dataclass
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    tensors: dict[str, np.ndarray]
    outputs: list[str] | None = None
    output_parameters: dict[str, Any] = field(default_factory=dict)


def decode_v2(body: bytes, header_length: str | None = None) -> InferRequest:
    """An OIP v2 inference request (JSON, or a JSON header followed by binary tensor data)."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            header_size = int(header_length)
        except ValueError:
            header_size = -1
        if not 0 <= header_size <= len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length is {header_length!r}; it must be the JSON header's length "
                f"in bytes (at most the body's {len(body)})."
            )
        binary = memoryview(body)[header_size:]
        body = body[:header_size]
    request = _object(
        body, '{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}'
    )
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument('"inputs" must be a non-empty list of tensors {name, shape, datatype, data}.')
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidArgument('"id" must be a string.')
    parameters = _parameters(request.get("parameters"), "The request's")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(inputs):
        size = binary_size(spec)
        chunk = None
        if size is not None:
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"Input {spec.get('name')!r} declares {size} bytes of binary data, but the body has only "
                    f"{len(binary) - offset} left."
                )
            chunk, offset = binary[offset : offset + size], offset + size
        name, array = decode_tensor(spec, f"inputs[{i}]", chunk)
        if name in tensors:
            raise InvalidArgument(f"Input {name!r} appears twice; give each input tensor once.")
        tensors[name] = array
    outputs = request.get("outputs")
    names: list[str] | None = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
            isinstance(o, Mapping) and isinstance(o.get("name"), str) for o in outputs
        ):
            raise InvalidArgument('"outputs" must be a list of objects with a "name".')
        names = [o["name"] for o in outputs]
    return InferRequest(request_id, parameters, tensors, names)


def encode_v2(
    name: str, version: str, request: InferRequest, output: Any, signature: ModelSignature | None
) -> dict[str, Any]:
    """The OIP v2 response for the model's `output` on `request`."""
    tensors = output_tensors(output, signature.outputs if signature is not None else None)
    if request.outputs is not None:
        by_name = dict(tensors)
        missing = [n for n in request.outputs if n not in by_name]
        if missing:
            raise InvalidArgument(f"Unknown output {missing[0]!r}: the model returns {', '.join(by_name)}.")
        tensors = [(n, by_name[n]) for n in request.outputs]
    response: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "id": request.id if request.id is not None else new_request_id(),
        "outputs": [encode_tensor(n, a) for n, a in tensors],
    }
    if request.parameters:
        response["parameters"] = {}
    return response


def output_tensors(output: Any, schema: Schema | None) -> list[tuple[str, np.ndarray]]:
    """The model's output as named arrays: one per dict entry or DataFrame column, else one."""
    if isinstance(output, Mapping):
        return [(str(k), to_numpy(v)) for k, v in output.items()]
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(output, pd.DataFrame):
        return [(str(c), output[c].to_numpy()) for c in output.columns]
    default = "output-0"
    if schema is not None and schema.type == "tensor" and schema.fields[0].name:
        default = schema.fields[0].name
    if pd is not None and isinstance(output, pd.Series) and output.name is not None:
        default = str(output.name)
    return [(default, to_numpy(output))]


def tensor_metadata(schema: Schema | None, prefix: str) -> list[dict[str, Any]]:
    """OIP model metadata `inputs`/`outputs` ({name, datatype, shape}) for a signature schema; unnamed
    tensors are called `{prefix}-{i}`."""
    if schema is None:
        return []
    if schema.type == "dataframe":
        return [{"name": f.name, "datatype": datatype_of(f.dtype), "shape": [-1]} for f in schema.fields]
    return [
        {
            "name": f.name or f"{prefix}-{i}",
            "datatype": datatype_of(f.dtype),
            "shape": list(f.shape) if f.shape is not None else [-1],
        }
        for i, f in enumerate(schema.fields)
    ]


def _parameters(value: Any, whose: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f'{whose} "parameters" must be an object.')
    return dict(value)


# -- KServe v1 and MLflow /invocations -----------------------------------------------------------------------


def decode_v1(body: bytes, schema: Schema | None) -> Payload:
    request = _object(body, '{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    keys = [k for k in ("instances", "inputs") if k in request]
    if len(keys) != 1:
        raise InvalidArgument('Give the rows as "instances" (or "inputs"): {"instances": [[...], ...]}.')
    return payloads.from_instances(schema, request[keys[0]], where=keys[0])


def decode_invocations(body: bytes, content_type: str | None, schema: Schema | None) -> Payload:
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media == "text/csv":
        return payloads.from_frame(schema, _csv(body))
    if media != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not supported; send application/json or text/csv."
        )
    request = _object(body, '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}')
    keys = [k for k in MLFLOW_KEYS if k in request]
    unknown = [k for k in request if k not in (*MLFLOW_KEYS, "params")]
    if len(keys) != 1 or unknown:
        raise InvalidArgument(
            f"The body must have exactly one of {', '.join(MLFLOW_KEYS)}"
            + (f"; unknown field {unknown[0]!r}" if unknown else f"; it has {', '.join(keys) or 'none'}")
            + "."
        )
    if request.get("params"):
        raise InvalidArgument('"params" are not supported by this server yet; remove them.')
    key = keys[0]
    value = request[key]
    if key == "dataframe_split":
        if isinstance(value, Mapping) and isinstance(value.get("data"), list) and "index" not in value:
            payload = payloads.from_split(schema, value.get("columns"), value["data"])
            if payload is not None:
                return payload
        return payloads.from_frame(schema, _split_frame(value))
    if key == "dataframe_records":
        if not isinstance(value, list) or not value or not all(isinstance(r, Mapping) for r in value):
            raise InvalidArgument('"dataframe_records" must be a non-empty list of {column: value} objects.')
        return payloads.from_records(schema, value)
    if key == "instances":
        return payloads.from_instances(schema, value)
    return payloads.from_inputs(schema, value)


def predictions(output: Any) -> dict[str, Any]:
    """`{"predictions": ...}`: arrays as (nested) lists, a DataFrame as a list of records."""
    return {"predictions": _jsonable(output)}


def _split_frame(value: Any) -> Any:
    if not isinstance(value, Mapping) or not isinstance(value.get("data"), list):
        raise InvalidArgument(
            '"dataframe_split" must be {"columns": [...], "data": [[...], ...]} (and optionally "index").'
        )
    pd = payloads.pandas()
    try:
        return pd.DataFrame(value["data"], columns=value.get("columns"), index=value.get("index"))
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f'"dataframe_split" does not describe a table: {exc}.') from None


def _csv(body: bytes) -> Any:
    pd = payloads.pandas()
    try:
        return pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidArgument(f"The CSV body cannot be read: {exc}.") from None


def _jsonable(output: Any) -> Any:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, Mapping):
        return {str(k): _jsonable(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return list(output)
    return to_numpy(output).tolist()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):  # only reached from json.dumps: to_json writes UTF-8 bytes itself
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
