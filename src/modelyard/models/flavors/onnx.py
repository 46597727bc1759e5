"""ONNX models (`onnx.ModelProto`), run with onnxruntime. A safe format: loading runs no Python code.

Without an input example the signature is read from the graph: input and output names, dtypes and shapes
(a symbolic or unknown dimension becomes -1).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust
from modelyard.models.signature import to_numpy
from modelyard.schemas.models import FieldSpec, ModelSignature, Schema

FILE = "model.onnx"


class OnnxFlavor(Flavor):
    name = "onnx"
    packages = ("onnx", "onnxruntime")
    extra = "onnx"

    @classmethod
    def detect(cls, model: Any) -> bool:
        onnx = sys.modules.get("onnx")
        return onnx is not None and isinstance(model, onnx.ModelProto)

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        onnx = self.import_library("onnx")
        onnx.save_model(model, path / FILE)
        return {"files": [FILE], "onnx_version": onnx.__version__, "opset": _opset(model)}

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        return self.import_library("onnx").load_model(path / config["files"][0])

    def prepare(self, model: Any) -> Any:
        ort = self.import_library("onnxruntime")
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def predict(self, model: Any, inputs: Any) -> Any:
        session = model if hasattr(model, "run") else self.prepare(model)
        names = [i.name for i in session.get_inputs()]
        feed = _feed(names, inputs)
        outputs = session.run(None, feed)
        out_names = [o.name for o in session.get_outputs()]
        return outputs[0] if len(outputs) == 1 else dict(zip(out_names, outputs))

    def default_signature(self, model: Any) -> ModelSignature | None:
        return ModelSignature(
            inputs=_graph_schema(model.graph.input), outputs=_graph_schema(model.graph.output)
        )


def _feed(names: list[str], inputs: Any) -> dict[str, np.ndarray]:
    if hasattr(inputs, "columns") and len(names) > 1:  # a DataFrame for a graph with one input per column
        inputs = {str(c): inputs[c].to_numpy().reshape(-1, 1) for c in inputs.columns}
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise InvalidArgument(
                f"The ONNX model needs inputs {', '.join(names)}; missing: {', '.join(missing)}."
            )
        return {n: to_numpy(inputs[n]) for n in names}
    if len(names) != 1:
        raise InvalidArgument(
            f"The ONNX model takes {len(names)} inputs ({', '.join(names)}): pass a dict of arrays."
        )
    return {names[0]: to_numpy(inputs)}


def _graph_schema(values: Any) -> Schema | None:
    from onnx.helper import tensor_dtype_to_np_dtype

    fields = []
    for value in values:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            return None  # sequences and maps: no tensor signature
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        dtype = np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type))
        fields.append(
            FieldSpec(name=value.name, dtype="str" if dtype.kind == "O" else dtype.name, shape=shape)
        )
    if not fields:
        return None
    return Schema(type="tensors" if len(fields) > 1 else "tensor", fields=tuple(fields))


def _opset(model: Any) -> dict[str, int]:
    return {op.domain or "ai.onnx": int(op.version) for op in model.opset_import}
