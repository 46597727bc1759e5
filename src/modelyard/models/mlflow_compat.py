"""Models written by MLflow (an `MLmodel` file instead of `model.yaml`), read without MLflow where possible.

- `sklearn` flavor (skops, pickle or cloudpickle): loaded by Modelyard's sklearn flavor. The skops
  `skops_trusted_types` that MLflow writes into MLmodel are ignored: a list read from the model itself
  cannot make the model trustworthy, so untrusted types warn like pickle does.
- `python_function` with `loader_module: mlflow.pyfunc.model` (a cloudpickled `PythonModel`): unpickled
  here (it needs `mlflow` or `mlflow-skinny` importable), `load_context` called with its artifacts, and
  `predict(context, inputs)` called by the predictor.
- any other flavor: handed to `mlflow.pyfunc.load_model` when MLflow is installed.

The MLflow signature (column or tensor specs in JSON strings) becomes a Modelyard signature.
"""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import yaml

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.flavors.sklearn import SklearnFlavor
from modelyard.models.safety import Trust
from modelyard.schemas.models import FieldSpec, ModelConfig, ModelSignature, Schema

MLMODEL_FILE = "MLmodel"

_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "str",
    "binary": "bytes",
    "datetime": "datetime64[ns]",
}


def read(folder: Path) -> tuple[ModelConfig, Flavor]:
    """The Modelyard view of an MLflow model folder, and the flavor that loads it."""
    data = yaml.safe_load((folder / MLMODEL_FILE).read_text()) or {}
    flavors = data.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    flavor: Flavor
    if "sklearn" in flavors:
        sk = flavors["sklearn"]
        flavor, config = (
            SklearnFlavor(),
            {
                "files": [sk["pickled_model"]],
                "serialization": sk.get("serialization_format", "pickle"),
            },
        )
    elif pyfunc.get("loader_module") == "mlflow.pyfunc.model" and "python_model" in pyfunc:
        flavor, config = MlflowPythonModelFlavor(), {"files": [pyfunc["python_model"]], **pyfunc}
    elif pyfunc:
        flavor, config = MlflowPyfuncFlavor(), {"files": [], **pyfunc}
    else:
        raise InvalidArgument(
            f"The MLflow model in {folder} has flavors {', '.join(flavors) or 'none'} and no python_function "
            "flavor: Modelyard cannot load it."
        )
    example = (data.get("saved_input_example_info") or {}).get("artifact_path")
    model_config = ModelConfig(
        flavors={flavor.name: config},
        signature=_signature(data.get("signature")),
        input_example=example,
        requirements=_requirements(folder),
        metadata=data.get("metadata") or {},
        created=str(data.get("utc_time_created") or "") or None,
        run_id=data.get("run_id"),
        artifact_path=data.get("artifact_path"),
    )
    return model_config, flavor


class MlflowPythonModelFlavor(Flavor):
    """A cloudpickled `mlflow.pyfunc.PythonModel`; the loaded object is (model, context)."""

    name = "mlflow_python_model"
    packages = ("mlflow-skinny", "cloudpickle")

    @classmethod
    def detect(cls, model: Any) -> bool:
        return False  # only for reading MLflow models

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        raise InvalidArgument("Modelyard reads MLflow python models but saves them as python_function.")

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        file = path / config["files"][0]
        trust.check(file, "a cloudpickled MLflow python model")
        try:
            import cloudpickle  # noqa: F401  (its reducers must be importable)
            from mlflow.pyfunc import PythonModelContext

            with open(file, "rb") as f:
                model = pickle.load(f)
        except ImportError as exc:
            raise InvalidArgument(
                f"This MLflow python model needs {exc.name!r} to load: pip install mlflow-skinny cloudpickle"
            ) from None
        artifacts = {name: str(path / spec["path"]) for name, spec in (config.get("artifacts") or {}).items()}
        context = PythonModelContext(artifacts=artifacts, model_config=config.get("model_config") or {})
        if hasattr(model, "load_context"):
            model.load_context(context)  # artifacts are read here, while the model folder exists
        return model, context

    def predict(self, model: Any, inputs: Any) -> Any:
        python_model, context = model
        params = list(inspect.signature(python_model.predict).parameters)
        if params and params[0] == "context":
            return python_model.predict(context, inputs)
        return python_model.predict(inputs)


class MlflowPyfuncFlavor(Flavor):
    """Any other MLflow flavor, loaded by `mlflow.pyfunc.load_model` (needs the full MLflow client)."""

    name = "mlflow_pyfunc"
    packages = ("mlflow",)

    @classmethod
    def detect(cls, model: Any) -> bool:
        return False

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        raise InvalidArgument("Modelyard reads other MLflow flavors but does not write them.")

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        trust.check(path / MLMODEL_FILE, f"an MLflow model (loader {config.get('loader_module')})")
        try:
            import mlflow.pyfunc
        except ImportError:
            raise InvalidArgument(
                f"This MLflow model (loader {config.get('loader_module')!r}) needs MLflow: pip install mlflow"
            ) from None
        return mlflow.pyfunc.load_model(str(path))

    def predict(self, model: Any, inputs: Any) -> Any:
        return model.predict(inputs)


def _signature(data: Any) -> ModelSignature | None:
    if not isinstance(data, dict):
        return None
    return ModelSignature(inputs=_schema(data.get("inputs")), outputs=_schema(data.get("outputs")))


def _schema(text: Any) -> Schema | None:
    """A Modelyard schema for MLflow's column or tensor specs; None for what has no equivalent."""
    if not text:
        return None
    specs = json.loads(text) if isinstance(text, str) else text
    if not specs:
        return None
    if all(s.get("type") == "tensor" for s in specs):
        fields = tuple(
            FieldSpec(
                name=s.get("name"), dtype=s["tensor-spec"]["dtype"], shape=tuple(s["tensor-spec"]["shape"])
            )
            for s in specs
        )
        if len(fields) > 1 and any(f.name is None for f in fields):
            return None
        return Schema(type="tensor" if len(fields) == 1 else "tensors", fields=fields)
    fields = tuple(
        FieldSpec(
            name=s.get("name"),
            dtype=_TYPES.get(s.get("type", ""), "object"),
            optional=not s.get("required", True),
        )
        for s in specs
    )
    if any(f.name is None for f in fields):
        return None  # unnamed columns: no equivalent that could be enforced
    return Schema(type="dataframe", fields=fields)


def _requirements(folder: Path) -> list[str]:
    file = folder / "requirements.txt"
    if not file.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in file.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]
