"""Wire models of the model registry: registered models, their versions, stages, aliases, promotion gates and
the event trail. Times are milliseconds since the epoch."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Stage(str, Enum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    @classmethod
    def parse(cls, text: str) -> Stage:
        """Case-insensitive, as people type it ('production', 'PRODUCTION')."""
        for stage in cls:
            if stage.value.lower() == str(text).strip().lower():
                return stage
        from modelyard.errors import InvalidArgument

        raise InvalidArgument(f"Unknown stage {text!r}: use one of None, Staging, Production, Archived.")

    @property
    def is_promotion(self) -> bool:
        """Moves into Staging or Production pass the model's gates; None and Archived never need to."""
        return self in (Stage.STAGING, Stage.PRODUCTION)


class VersionStatus(str, Enum):
    READY = "READY"
    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelVersion(_Model):
    name: str
    version: int
    creation_time: int
    last_updated_time: int
    description: str = ""
    source: str  # the model's artifact URI, e.g. runs:/<run_id>/model
    run_id: str | None = None
    status: VersionStatus = VersionStatus.READY
    stage: Stage = Stage.NONE
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    signature: dict[str, Any] | None = None  # the model's input/output signature, when it has one
    created_by: str | None = None


class RegisteredModel(_Model):
    name: str
    creation_time: int
    last_updated_time: int
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, int] = Field(default_factory=dict)  # alias -> version
    latest_versions: list[ModelVersion] = Field(default_factory=list)  # the newest version in each stage


class StageTransition(_Model):
    name: str
    version: int
    from_stage: Stage
    to_stage: Stage
    time: int
    user: str | None = None
    comment: str = ""


class GateRule(_Model):
    """One rule of a promotion policy, e.g. `metrics.accuracy >= 0.9`, `metrics.accuracy >= champion`,
    `tags.validated == 'true'`, `approvals >= 2`. `on` limits it to some targets (stage names and `@alias`);
    empty means every promotion (a move into Staging or Production, and every alias set or moved)."""

    rule: str
    on: list[str] = Field(default_factory=list)


class GatePolicy(_Model):
    rules: list[GateRule] = Field(default_factory=list)


class GateCheck(_Model):
    """How one rule fared on one promotion, with the values it compared."""

    rule: str
    passed: bool
    detail: str


class RegistryEvent(_Model):
    event_id: int
    time: int
    type: str  # e.g. model_version.created, model_version.stage_changed, model_alias.set, run.finished
    name: str | None = None  # registered model
    version: int | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    user: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class ModelVersionsPage(_Model):
    model_versions: list[ModelVersion]
    next_page_token: str | None = None


class RegisteredModelsPage(_Model):
    registered_models: list[RegisteredModel]
    next_page_token: str | None = None


# request and response bodies of /api/v1/models and /api/v1/model-versions -------------------------------
class CreateRegisteredModel(_Model):
    name: str
    description: str = ""
    tags: dict[str, str] | None = None


class UpdateRegisteredModel(_Model):
    description: str | None = None
    new_name: str | None = None


class CreateModelVersion(_Model):
    source: str
    run_id: str | None = None
    description: str = ""
    tags: dict[str, str] | None = None
    signature: dict[str, Any] | None = None


class UpdateModelVersion(_Model):
    description: str


class TransitionStage(_Model):
    stage: str
    archive_existing: bool = False
    comment: str = ""


class SetAlias(_Model):
    version: int = Field(ge=1, le=2**31)


class CheckGates(_Model):
    target: str  # a stage name or @alias


class GateCheckList(_Model):
    checks: list[GateCheck]


class ModelVersionList(_Model):
    model_versions: list[ModelVersion]


class StageHistory(_Model):
    transitions: list[StageTransition]


class EventList(_Model):
    events: list[RegistryEvent]
