"""The flavor interface, and finding flavors by name or by model object (built-ins + entry points).

A flavor knows one library: how to detect its models, save them into a model folder, load them back, and
predict with them. Other packages add flavors through the `modelyard.flavors` entry-point group:

    [project.entry-points."modelyard.flavors"]
    catboost = "my_package.flavor:CatBoostFlavor"
"""

from __future__ import annotations

import abc
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from modelyard.errors import InvalidArgument
from modelyard.models.safety import Trust
from modelyard.schemas.models import ModelSignature

GROUP = "modelyard.flavors"

_BUILTIN: dict[str, str] = {
    "sklearn": "modelyard.models.flavors.sklearn:SklearnFlavor",
    "pytorch": "modelyard.models.flavors.pytorch:PyTorchFlavor",
    "onnx": "modelyard.models.flavors.onnx:OnnxFlavor",
    "xgboost": "modelyard.models.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "modelyard.models.flavors.lightgbm:LightGBMFlavor",
    "python_function": "modelyard.models.flavors.pyfunc:PythonFunctionFlavor",
}


class Flavor(abc.ABC):
    """One model library. Subclasses set the class attributes and implement the four methods.

    `packages` are the distributions a loaded model needs (their installed versions become the model's
    requirements); `extra` is the `modelyard[...]` pip extra that installs them. Detection tries flavors
    in `priority` order, lowest first; the catch-all python_function flavor comes last.
    """

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    priority: ClassVar[int] = 100

    @classmethod
    @abc.abstractmethod
    def detect(cls, model: Any) -> bool:
        """Whether this flavor saves `model`. Must not import the library: check `sys.modules` first."""

    @abc.abstractmethod
    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        """Write `model` into folder `path`; return the flavor's config for model.yaml (with `files`)."""

    @abc.abstractmethod
    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        """The native model from folder `path`. Call `trust.check(file, ...)` before unpickling a file."""

    @abc.abstractmethod
    def predict(self, model: Any, inputs: Any) -> Any:
        """Predictions of the native `model` for `inputs` (already checked against the signature)."""

    def prepare(self, model: Any) -> Any:
        """What `predict` runs, made once per predictor from the native model (e.g. an inference session)."""
        return model

    def default_signature(self, model: Any) -> ModelSignature | None:
        """A signature read from the model itself, used when no input example is given (e.g. ONNX graphs)."""
        return None

    def requirements(self, config: dict[str, Any]) -> list[str]:
        """Distributions this saved model needs beyond `packages` (e.g. cloudpickle for one format)."""
        return []

    @classmethod
    def import_library(cls, module: str) -> Any:
        """Import `module`, or fail with an error naming the pip extra that installs it."""
        try:
            return importlib.import_module(module)
        except ImportError:
            hint = f"pip install 'modelyard[{cls.extra}]'" if cls.extra else f"pip install {module}"
            raise InvalidArgument(f"The {cls.name} flavor needs the {module!r} package: {hint}") from None

    @classmethod
    def loader(cls) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(target: str) -> type[Flavor]:
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Flavor)):
        raise InvalidArgument(f"{target} is not a modelyard Flavor subclass.")
    return cls


def flavor_targets() -> dict[str, str]:
    """Flavor name -> "module:Class" for the built-ins and every installed entry point (which win)."""
    targets = dict(_BUILTIN)
    for ep in entry_points(group=GROUP):
        targets[ep.name] = ep.value
    return targets


def get_flavor(name: str) -> Flavor:
    """The installed flavor called `name`."""
    target = flavor_targets().get(name)
    if target is None:
        known = ", ".join(sorted(flavor_targets()))
        raise InvalidArgument(
            f"Unknown model flavor {name!r}. Installed flavors: {known}. A third-party flavor is added by "
            f"installing the package that declares it in the {GROUP!r} entry-point group."
        )
    return _load_class(target)()


def flavor_for(model: Any) -> Flavor:
    """The flavor that saves `model`, tried in priority order."""
    classes = [_load_class(t) for t in flavor_targets().values()]
    for cls in sorted(classes, key=lambda c: c.priority):
        if cls.detect(model):
            return cls()
    raise InvalidArgument(
        f"No model flavor handles a {type(model).__module__}.{type(model).__qualname__}. Supported: "
        "scikit-learn estimators, torch.nn.Module, onnx.ModelProto, XGBoost and LightGBM models, and any "
        "object with a predict(inputs) method (python_function). Pass flavor='...' to choose one."
    )
