"""scikit-learn estimators and pipelines: cloudpickle (default), pickle, or the safe skops format.

skops is opt-in (`serialization="skops"`): it loads without running code from the file, but importing it
costs 0.3-1.6 s, more than the whole of a small `log_model` should take.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust

FORMATS = ("cloudpickle", "pickle", "skops")
_FILES = {"cloudpickle": "model.pkl", "pickle": "model.pkl", "skops": "model.skops"}


class SklearnFlavor(Flavor):
    name = "sklearn"
    packages = ("scikit-learn",)
    extra = "sklearn"

    @classmethod
    def detect(cls, model: Any) -> bool:
        base = sys.modules.get("sklearn.base")
        return base is not None and isinstance(model, base.BaseEstimator)

    def save(
        self,
        model: Any,
        path: Path,
        *,
        input_example: Any = None,
        serialization: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        sklearn = self.import_library("sklearn")
        fmt = serialization or ("cloudpickle" if _has("cloudpickle") else "pickle")
        if fmt not in FORMATS:
            raise InvalidArgument(
                f"Unknown sklearn serialization {fmt!r}; choose one of {', '.join(FORMATS)}."
            )
        file = path / _FILES[fmt]
        if fmt == "skops":
            self.import_library("skops.io").dump(model, file)
        else:
            dumps = self.import_library("cloudpickle").dumps if fmt == "cloudpickle" else pickle.dumps
            try:
                file.write_bytes(dumps(model, protocol=pickle.DEFAULT_PROTOCOL))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise InvalidArgument(f"Could not save the estimator with {fmt}: {exc}.") from None
        return {
            "files": [file.name],
            "serialization": fmt,
            "sklearn_version": sklearn.__version__,
        }

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        fmt = config.get("serialization", "pickle")
        file = path / config["files"][0]
        return load_estimator(file, fmt, trust, self)

    def predict(self, model: Any, inputs: Any) -> Any:
        if isinstance(inputs, dict):
            inputs = _frame(inputs)
        method = getattr(model, "predict", None) or model.transform  # a transformer-only pipeline
        return method(inputs)

    def requirements(self, config: dict[str, Any]) -> list[str]:
        return {"cloudpickle": ["cloudpickle"], "skops": ["skops"]}.get(config.get("serialization", ""), [])


def load_estimator(file: Path, fmt: str, trust: Trust, flavor: Flavor) -> Any:
    """An estimator from `file` in `fmt` (also used for MLflow-written sklearn models)."""
    if fmt == "skops":
        sio = flavor.import_library("skops.io")
        untrusted = sio.get_untrusted_types(file=file)
        if untrusted:  # types outside skops' safe defaults: loading them imports and runs their code
            trust.check(
                file, f"a skops model that uses types outside skops' safe set ({', '.join(untrusted)})"
            )
        return sio.load(file, trusted=untrusted)
    if fmt not in ("pickle", "cloudpickle"):
        raise InvalidArgument(f"Unknown sklearn serialization {fmt!r} in the model's configuration.")
    trust.check(file, f"a {fmt}d scikit-learn model")
    if fmt == "cloudpickle":
        flavor.import_library("cloudpickle")  # its reducers must be importable to unpickle
    with open(file, "rb") as f:
        return pickle.load(f)


def _frame(inputs: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame(inputs)


def _has(module: str) -> bool:
    if module in sys.modules:
        return True
    from importlib.util import find_spec

    return find_spec(module) is not None
