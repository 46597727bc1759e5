"""The model folder: `model.yaml` (a `ModelConfig`), the flavor's files, `requirements.txt` and the input
example (`input_example.json`, in MLflow's layout: pandas "split" orient for DataFrames, `{"inputs": ...}`
for arrays and dicts of arrays).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from modelyard.errors import InvalidArgument
from modelyard.models.signature import to_numpy
from modelyard.schemas.models import ModelConfig

FORMAT_VERSION = 1
MODEL_FILE = "model.yaml"
REQUIREMENTS_FILE = "requirements.txt"
EXAMPLE_FILE = "input_example.json"


def write_config(config: ModelConfig, folder: Path) -> None:
    data = config.model_dump(mode="json", exclude_none=True)
    if config.signature is not None:  # leave out `optional: false` and the like: the file stays readable
        data["signature"] = config.signature.model_dump(mode="json", exclude_defaults=True)
    (folder / MODEL_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    (folder / REQUIREMENTS_FILE).write_text("".join(f"{r}\n" for r in config.requirements))


def read_config(folder: Path) -> ModelConfig:
    file = folder / MODEL_FILE
    try:
        data = yaml.safe_load(file.read_text())
        config = ModelConfig.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidArgument(f"{file} is not a valid model.yaml: {exc}") from None
    if config.format_version > FORMAT_VERSION:
        raise InvalidArgument(
            f"{file} has format version {config.format_version}, newer than this Modelyard reads "
            f"({FORMAT_VERSION}): upgrade modelyard."
        )
    return config


def write_example(example: Any, folder: Path) -> str:
    """Save `example` as JSON in the model folder; returns the file name."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(example, pd.DataFrame):
        text = example.to_json(orient="split", index=False, date_format="iso")
    elif isinstance(example, Mapping):
        text = json.dumps({"inputs": {str(k): to_numpy(v).tolist() for k, v in example.items()}}, default=str)
    else:
        text = json.dumps({"inputs": to_numpy(example).tolist()}, default=str)
    (folder / EXAMPLE_FILE).write_text(text)
    return EXAMPLE_FILE


def read_example(file: Path) -> Any:
    """An input example saved by `write_example` (or by MLflow): a DataFrame, an array or a dict of arrays."""
    data = json.loads(file.read_text())
    if isinstance(data, dict) and "inputs" in data:
        inputs = data["inputs"]
        if isinstance(inputs, dict):
            return {k: np.asarray(v) for k, v in inputs.items()}
        return np.asarray(inputs)
    if isinstance(data, dict) and "columns" in data:
        import pandas as pd

        return pd.DataFrame(data["data"], columns=data["columns"])
    return data
