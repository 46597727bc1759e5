"""Models: one folder format (model.yaml + files), flavors per library, signatures, load and log.

    info = modelyard.models.log_model(clf, "model", input_example=X[:5])
    predictor = modelyard.models.load_predictor(info.model_uri)
    predictor.predict(X)

Library imports happen only when a model of that library is saved or loaded.
"""

from __future__ import annotations

from modelyard.models.flavors.base import Flavor, flavor_for, get_flavor
from modelyard.models.load import load_input_example, load_model, load_predictor, read_model_config
from modelyard.models.log import ModelInfo, log_model
from modelyard.models.predictor import Predictor
from modelyard.models.safety import UnsafeModelWarning
from modelyard.models.save import save_model
from modelyard.models.signature import infer_signature
from modelyard.schemas.models import FieldSpec, ModelConfig, ModelSignature, Schema

__all__ = [
    "FieldSpec",
    "Flavor",
    "ModelConfig",
    "ModelInfo",
    "ModelSignature",
    "Predictor",
    "Schema",
    "UnsafeModelWarning",
    "flavor_for",
    "get_flavor",
    "infer_signature",
    "load_input_example",
    "load_model",
    "load_predictor",
    "log_model",
    "read_model_config",
    "save_model",
]
