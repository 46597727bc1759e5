"""LightGBM boosters and scikit-learn-style models (LGBMClassifier, ...), in LightGBM's text format.

A safe format: loading parses text and JSON and runs no Python code. A scikit-learn-style model is saved as
its booster plus its constructor parameters and fitted attributes (`sklearn.json`), and rebuilt from both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust

FILE = "model.txt"
SKLEARN_FILE = "sklearn.json"


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    packages = ("lightgbm",)
    extra = "lightgbm"
    priority = 50  # before sklearn: LGBMModel is a scikit-learn estimator too

    @classmethod
    def detect(cls, model: Any) -> bool:
        lgb = sys.modules.get("lightgbm")
        return lgb is not None and isinstance(model, (lgb.Booster, lgb.LGBMModel))

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        lgb = self.import_library("lightgbm")
        booster = model if isinstance(model, lgb.Booster) else model.booster_
        booster.save_model(str(path / FILE))
        config = {"files": [FILE], "model_class": type(model).__name__, "lightgbm_version": lgb.__version__}
        if not isinstance(model, lgb.Booster):
            state = {"params": _json_params(model.get_params()), "classes": _classes(model)}
            (path / SKLEARN_FILE).write_text(json.dumps(state))
            config["files"].append(SKLEARN_FILE)
        return config

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        lgb = self.import_library("lightgbm")
        booster = lgb.Booster(model_file=str(path / FILE))
        name = config.get("model_class", "Booster")
        if name == "Booster":
            return booster
        cls = getattr(lgb, name, None)
        if not (isinstance(cls, type) and issubclass(cls, lgb.LGBMModel)):
            raise InvalidArgument(f"Unknown LightGBM model class {name!r} in model.yaml.")
        state = json.loads((path / SKLEARN_FILE).read_text())
        return _rebuild(cls, booster, state)

    def predict(self, model: Any, inputs: Any) -> Any:
        if isinstance(inputs, dict):
            import pandas as pd

            inputs = pd.DataFrame(inputs)
        return model.predict(inputs)


def _rebuild(cls: type, booster: Any, state: dict[str, Any]) -> Any:
    """A fitted scikit-learn-style model around `booster`: the attributes `fit` would have set."""
    model = cls(**state["params"])
    model._Booster = booster
    model._n_features = model._n_features_in = booster.num_feature()
    model._objective = booster.params.get("objective", state["params"].get("objective"))
    model._best_iteration = booster.best_iteration
    model._best_score = booster.best_score
    model._evals_result = {}
    names = booster.feature_name()
    model._fitted_with_feature_names = not all(n == f"Column_{i}" for i, n in enumerate(names))
    if state.get("classes") is not None:
        from lightgbm.compat import _LGBMLabelEncoder

        classes = np.asarray(state["classes"])
        model._le = _LGBMLabelEncoder().fit(classes)
        model._classes = model._le.classes_
        model._n_classes = len(classes)
        model._class_map = {c: i for i, c in enumerate(model._le.classes_)}
    model.fitted_ = True
    return model


def _classes(model: Any) -> list[Any] | None:
    classes = getattr(model, "classes_", None) if hasattr(model, "_classes") else None
    return None if classes is None else np.asarray(classes).tolist()


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """Constructor parameters that survive JSON; others (callables, random states) are left at defaults."""
    kept = {}
    for key, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        kept[key] = value
    return kept
