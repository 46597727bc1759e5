"""XGBoost boosters and scikit-learn-style models (XGBClassifier, ...), in XGBoost's own JSON format.

A safe format: loading parses JSON and runs no Python code. The class to rebuild is looked up by name
inside the xgboost package only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust

FILE = "model.json"


class XGBoostFlavor(Flavor):
    name = "xgboost"
    packages = ("xgboost",)
    extra = "xgboost"
    priority = 50  # before sklearn: XGBModel is a scikit-learn estimator too

    @classmethod
    def detect(cls, model: Any) -> bool:
        xgb = sys.modules.get("xgboost")
        return xgb is not None and isinstance(model, (xgb.Booster, xgb.XGBModel))

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        xgb = self.import_library("xgboost")
        model.save_model(str(path / FILE))
        return {"files": [FILE], "model_class": type(model).__name__, "xgboost_version": xgb.__version__}

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        xgb = self.import_library("xgboost")
        cls = getattr(xgb, config.get("model_class", "Booster"), None)
        if not (isinstance(cls, type) and issubclass(cls, (xgb.Booster, xgb.XGBModel))):
            raise InvalidArgument(f"Unknown XGBoost model class {config.get('model_class')!r} in model.yaml.")
        model = cls()
        model.load_model(str(path / config["files"][0]))
        return model

    def predict(self, model: Any, inputs: Any) -> Any:
        xgb = sys.modules["xgboost"]
        if isinstance(inputs, dict):
            inputs = _frame(inputs)
        if isinstance(model, xgb.Booster):
            return model.predict(xgb.DMatrix(inputs))
        return model.predict(inputs)


def _frame(inputs: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame(inputs)
