"""The model registry over a Modelyard server's /api/v1 (the server checks roles and gates)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from modelyard.schemas.api import TagValue
from modelyard.schemas.registry import (
    CheckGates,
    CreateModelVersion,
    CreateRegisteredModel,
    EventList,
    GateCheck,
    GateCheckList,
    GatePolicy,
    ModelVersion,
    ModelVersionList,
    ModelVersionsPage,
    RegisteredModel,
    RegisteredModelsPage,
    RegistryEvent,
    SetAlias,
    Stage,
    StageHistory,
    StageTransition,
    TransitionStage,
    UpdateModelVersion,
    UpdateRegisteredModel,
)
from modelyard.store.model_registry import ModelRegistryStore, parse_version, validate_model_name
from modelyard.store.rest_resource import RestResource, segment


class RestModelRegistryStore(RestResource, ModelRegistryStore):
    def _model(self, name: str) -> str:
        return f"/models/{segment(validate_model_name(name))}"

    def _version(self, name: str, version: int | str) -> str:
        return f"{self._model(name)}/versions/{parse_version(version)}"

    # registered models -----------------------------------------------------------------------------------
    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        body = CreateRegisteredModel(name=name, description=description, tags=tags)
        return RegisteredModel.model_validate(self._call("POST", "/models", body))

    def get_registered_model(self, name: str) -> RegisteredModel:
        return RegisteredModel.model_validate(self._call("GET", self._model(name)))

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> RegisteredModelsPage:
        params = {"filter": filter_string, "max_results": max_results, "page_token": page_token}
        return RegisteredModelsPage.model_validate(self._call("GET", "/models", params=params))

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        body = UpdateRegisteredModel(description=description)
        return RegisteredModel.model_validate(self._call("PATCH", self._model(name), body))

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        body = UpdateRegisteredModel(new_name=new_name)
        return RegisteredModel.model_validate(self._call("PATCH", self._model(name), body))

    def delete_registered_model(self, name: str) -> None:
        self._call("DELETE", self._model(name))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._call("PUT", f"{self._model(name)}/tags/{quote(key, safe='/')}", TagValue(value=value))

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self._call("DELETE", f"{self._model(name)}/tags/{quote(key, safe='/')}")

    # versions --------------------------------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        signature: dict[str, object] | None = None,
        user: str | None = None,  # the server knows who calls
    ) -> ModelVersion:
        body = CreateModelVersion(
            source=source, run_id=run_id, description=description, tags=tags, signature=signature
        )
        return ModelVersion.model_validate(self._call("POST", f"{self._model(name)}/versions", body))

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return ModelVersion.model_validate(self._call("GET", self._version(name, version)))

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> ModelVersionsPage:
        params = {"filter": filter_string, "max_results": max_results, "page_token": page_token}
        return ModelVersionsPage.model_validate(self._call("GET", "/model-versions", params=params))

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        body = UpdateModelVersion(description=description)
        return ModelVersion.model_validate(self._call("PATCH", self._version(name, version), body))

    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        self._call("DELETE", self._version(name, version), params={"force": "true" if force else None})

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        self._call(
            "PUT", f"{self._version(name, version)}/tags/{quote(key, safe='/')}", TagValue(value=value)
        )

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        self._call("DELETE", f"{self._version(name, version)}/tags/{quote(key, safe='/')}")

    def get_latest_versions(
        self, name: str, stages: Sequence[Stage | str] | None = None
    ) -> list[ModelVersion]:
        wanted = [s.value if isinstance(s, Stage) else s for s in stages] if stages else None
        found = self._call("GET", f"{self._model(name)}/latest", params={"stages": wanted})
        return ModelVersionList.model_validate(found).model_versions

    # stages and aliases ----------------------------------------------------------------------------------
    def transition_stage(
        self,
        name: str,
        version: int | str,
        stage: Stage | str,
        archive_existing: bool = False,
        comment: str = "",
        user: str | None = None,
    ) -> ModelVersion:
        target = stage.value if isinstance(stage, Stage) else stage
        body = TransitionStage(stage=target, archive_existing=archive_existing, comment=comment)
        return ModelVersion.model_validate(self._call("POST", f"{self._version(name, version)}/stage", body))

    def stage_history(self, name: str, version: int | str | None = None) -> list[StageTransition]:
        params = {"version": None if version is None else parse_version(version)}
        found = self._call("GET", f"{self._model(name)}/stage-history", params=params)
        return StageHistory.model_validate(found).transitions

    def set_alias(self, name: str, alias: str, version: int | str, user: str | None = None) -> ModelVersion:
        body = SetAlias(version=parse_version(version))
        return ModelVersion.model_validate(
            self._call("PUT", f"{self._model(name)}/aliases/{segment(alias)}", body)
        )

    def delete_alias(self, name: str, alias: str, user: str | None = None) -> None:
        self._call("DELETE", f"{self._model(name)}/aliases/{segment(alias)}")

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return ModelVersion.model_validate(self._call("GET", f"{self._model(name)}/aliases/{segment(alias)}"))

    # gates and events ------------------------------------------------------------------------------------
    def set_gate_policy(self, name: str, policy: GatePolicy) -> GatePolicy:
        return GatePolicy.model_validate(
            self._call("PUT", f"{self._model(name)}/gates", GatePolicy.model_validate(policy))
        )

    def get_gate_policy(self, name: str) -> GatePolicy:
        return GatePolicy.model_validate(self._call("GET", f"{self._model(name)}/gates"))

    def check_gates(self, name: str, version: int | str, target: str) -> list[GateCheck]:
        found = self._call("POST", f"{self._version(name, version)}/check-gates", CheckGates(target=target))
        return GateCheckList.model_validate(found).checks

    def list_events(
        self, name: str | None = None, after_id: int = 0, max_results: int = 100
    ) -> list[RegistryEvent]:
        params = {"name": name, "after_id": after_id, "max_results": max_results}
        return EventList.model_validate(self._call("GET", "/registry-events", params=params)).events
