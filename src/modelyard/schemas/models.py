"""Wire models for the model format: signatures and the `model.yaml` a logged model carries.

The registry stores a version's signature as this JSON; the server, SDK and UI read the same models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(_Model):
    """One DataFrame column or one tensor.

    `dtype` is a numpy dtype name (`float64`, `int32`, `bool`, `datetime64[ns]`), or `str`, `bytes`,
    `object` for columns of Python values. `shape` is for tensors only; -1 marks a dimension of any size
    (the batch dimension). `optional` is for columns only: a missing optional column is not an error.
    """

    name: str | None = None
    dtype: str
    shape: tuple[int, ...] | None = None
    optional: bool = False


class Schema(_Model):
    """What a model takes or returns.

    `dataframe`: named columns (a pandas DataFrame, or a dict of 1-d arrays); `tensor`: one array;
    `tensors`: a dict of named arrays.
    """

    type: Literal["dataframe", "tensor", "tensors"]
    fields: tuple[FieldSpec, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields if f.name is not None]


class ModelSignature(_Model):
    inputs: Schema | None = None
    outputs: Schema | None = None


class ModelConfig(BaseModel):
    """The content of `model.yaml` at the root of every model folder.

    `flavors` maps a flavor name to its configuration: `loader` (the flavor class, informational: loading
    looks the flavor up by name among the installed flavors), `files` (paths inside the model folder), and
    whatever else the flavor records (its serialization format, library version, ...).
    """

    model_config = ConfigDict(extra="allow")

    format_version: int = 1
    flavors: dict[str, dict[str, Any]]
    signature: ModelSignature | None = None
    input_example: str | None = None
    requirements: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created: str | None = None
    modelyard_version: str | None = None
    run_id: str | None = None
    artifact_path: str | None = None
