"""python_function: any object with a `predict(inputs)` method, or a plain function, saved with cloudpickle.

cloudpickle saves classes and functions defined in `__main__` or a notebook by value; those defined in an
importable module are saved by reference, so that module must be importable where the model is loaded.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust

FILE = "python_model.pkl"


class PythonFunctionFlavor(Flavor):
    name = "python_function"
    packages = ("cloudpickle",)
    extra = "pyfunc"
    priority = 1000  # the catch-all: every specific flavor is tried first

    @classmethod
    def detect(cls, model: Any) -> bool:
        if isinstance(model, type):
            return False
        return callable(getattr(model, "predict", None)) or isinstance(model, types.FunctionType)

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        cloudpickle = self.import_library("cloudpickle")
        try:
            data = cloudpickle.dumps(model, protocol=pickle.DEFAULT_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidArgument(
                f"Could not save the model with cloudpickle: {exc}. Keep only picklable state on it (no open "
                "files, locks or connections; create those in predict or lazily)."
            ) from None
        (path / FILE).write_bytes(data)
        return {"files": [FILE], "serialization": "cloudpickle", "python_class": _qualname(model)}

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        file = path / config["files"][0]
        trust.check(file, "a cloudpickled python_function model")
        self.import_library("cloudpickle")
        with open(file, "rb") as f:
            return pickle.load(f)

    def predict(self, model: Any, inputs: Any) -> Any:
        if isinstance(model, types.FunctionType):
            return model(inputs)
        return model.predict(inputs)


def _qualname(model: Any) -> str:
    target = model if isinstance(model, types.FunctionType) else type(model)
    return f"{target.__module__}.{target.__qualname__}"
