"""scikit-learn estimators and pipelines: the safe skops format by default, else cloudpickle or pickle.

With no `serialization` given, a model is saved with skops whenever skops represents it with types from its
safe set only: such a file loads in any process without running code from it, so without UnsafeModelWarning.
Otherwise (skops not installed, it cannot write the model, or the model uses other types: your own classes,
lambdas, tree internals) the model is saved with cloudpickle (pickle without cloudpickle) and an
UnsafeModelWarning says so, naming the format used and why. Passing `serialization=` picks a format outright,
without the warning; the format used is recorded in model.yaml (`serialization`). Importing skops costs
0.3-1.6 s once per process.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust, UnsafeModelWarning, caller_stacklevel

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
        fmt, skops_bytes = (serialization, None) if serialization else _default_format(model)
        if fmt not in FORMATS:
            raise InvalidArgument(
                f"Unknown sklearn serialization {fmt!r}; choose one of {', '.join(FORMATS)}."
            )
        file = path / _FILES[fmt]
        if fmt == "skops":
            file.write_bytes(skops_bytes or self.import_library("skops.io").dumps(model))
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


def _default_format(model: Any) -> tuple[str, bytes | None]:
    """The default format for `model`: "skops", with the bytes already made to check them, when skops
    represents it with types from its safe set only; else cloudpickle or pickle (no bytes), with an
    UnsafeModelWarning saying why."""
    pickler = "cloudpickle" if _has("cloudpickle") else "pickle"
    try:
        import skops.io as sio
    except ImportError:
        why = "skops is not installed (pip install 'modelyard[sklearn]')"
    else:
        try:
            data = sio.dumps(model)
            untrusted = sio.get_untrusted_types(data=data)
        except Exception as exc:  # skops raises many types for objects it cannot represent
            why = f"skops cannot write it ({type(exc).__name__}: {exc})"
        else:
            if not untrusted:
                return "skops", data
            why = f"it uses types outside skops' safe set ({', '.join(untrusted)})"
    warnings.warn(
        f"Saved the scikit-learn model with {pickler}, not the safe skops format: {why}. Loading it in "
        f"another process will warn that it can run code. Pass serialization={pickler!r} to choose {pickler} "
        f"without this warning, or serialization='skops' to save with skops anyway (loading then needs trust "
        f"for the types above only).",
        UnsafeModelWarning,
        stacklevel=caller_stacklevel(),
    )
    return pickler, None


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
