"""`Predictor`: one `predict(inputs)` for every flavor, with the signature checked first."""

from __future__ import annotations

from typing import Any

from modelyard.models.flavors.base import Flavor
from modelyard.models.signature import enforce
from modelyard.schemas.models import ModelConfig, ModelSignature


class Predictor:
    """A loaded model behind a uniform `predict`.

    `predict` takes a pandas DataFrame, a numpy array (or list, or torch tensor) or a dict of arrays, checks
    it against the model's input signature (raising `InvalidArgument` that names the wrong column or
    tensor), and returns what the model returns: arrays for array outputs, DataFrames where the model
    gives them, dicts of arrays for named outputs.
    """

    def __init__(self, flavor: Flavor, model: Any, config: ModelConfig, uri: str) -> None:
        self.flavor = flavor
        self.model = model
        self.config = config
        self.uri = uri
        self._runner = flavor.prepare(model)

    def __repr__(self) -> str:
        return f"<Predictor {self.flavor.name} {self.uri!r}>"

    @property
    def signature(self) -> ModelSignature | None:
        return self.config.signature

    @property
    def metadata(self) -> dict[str, Any]:
        return self.config.metadata

    @property
    def requirements(self) -> list[str]:
        return self.config.requirements

    def predict(self, inputs: Any) -> Any:
        schema = self.signature.inputs if self.signature is not None else None
        if schema is not None:
            inputs = enforce(schema, inputs)
        return self.flavor.predict(self._runner, inputs)
