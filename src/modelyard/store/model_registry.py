"""The model registry interface: registered models, versions, stages with their history, aliases, promotion
gates and the event trail. Every write is one transaction; every change leaves an event."""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence

from modelyard.errors import InvalidArgument
from modelyard.schemas.registry import (
    GateCheck,
    GatePolicy,
    ModelVersion,
    ModelVersionsPage,
    RegisteredModel,
    RegisteredModelsPage,
    RegistryEvent,
    Stage,
    StageTransition,
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][\w.\- ]{0,255}$")
_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,255}$")


def validate_model_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name != name.strip():
        raise InvalidArgument(
            f"Invalid model name {name!r}: use 1-256 letters, digits, '_', '-', '.' or ' ', starting with a "
            "letter or digit."
        )
    return name


def validate_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise InvalidArgument(
            f"Invalid alias {alias!r}: use letters, digits, '_' or '-', starting with a letter or '_' "
            "(e.g. champion, challenger)."
        )
    if re.fullmatch(r"[vV]\d+|latest", alias):
        raise InvalidArgument(f"{alias!r} is reserved (it reads as a version); pick another alias.")
    return alias


def parse_version(version: object) -> int:
    try:
        number = int(str(version))
    except ValueError:
        number = 0
    if number < 1 or number > 2**31:
        raise InvalidArgument(f"Invalid model version {version!r}: versions are whole numbers from 1.")
    return number


class ModelRegistryStore(abc.ABC):
    # registered models -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        """AlreadyExists if the name is taken."""

    @abc.abstractmethod
    def get_registered_model(self, name: str) -> RegisteredModel: ...

    @abc.abstractmethod
    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> RegisteredModelsPage:
        """Filter on `name` (=, !=, LIKE, ILIKE) and `tags.<key>`, ordered by name."""

    @abc.abstractmethod
    def update_registered_model(self, name: str, description: str) -> RegisteredModel: ...

    @abc.abstractmethod
    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel: ...

    @abc.abstractmethod
    def delete_registered_model(self, name: str) -> None:
        """With every version; InvalidState while a version is in Staging or Production or has an alias."""

    @abc.abstractmethod
    def set_registered_model_tag(self, name: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_registered_model_tag(self, name: str, key: str) -> None: ...

    # versions --------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        signature: dict[str, object] | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        """The next version number of `name` (unique and increasing under concurrent registrations)."""

    @abc.abstractmethod
    def get_model_version(self, name: str, version: int | str) -> ModelVersion: ...

    @abc.abstractmethod
    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> ModelVersionsPage:
        """Filter on `name`, `run_id`, `source`, `stage`, `version` and `tags.<key>`; newest first per model."""

    @abc.abstractmethod
    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion: ...

    @abc.abstractmethod
    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        """InvalidState while an alias or the Staging/Production stage points at it, unless `force`."""

    @abc.abstractmethod
    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None: ...

    @abc.abstractmethod
    def get_latest_versions(
        self, name: str, stages: Sequence[Stage | str] | None = None
    ) -> list[ModelVersion]:
        """The newest version in each stage (or in each of `stages`)."""

    # stages and aliases ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def transition_stage(
        self,
        name: str,
        version: int | str,
        stage: Stage | str,
        archive_existing: bool = False,
        comment: str = "",
        user: str | None = None,
    ) -> ModelVersion:
        """Move a version to a stage, after the model's gates pass (GateFailed names the rule that did not).
        `archive_existing` archives the versions already in that stage."""

    @abc.abstractmethod
    def stage_history(self, name: str, version: int | str | None = None) -> list[StageTransition]: ...

    @abc.abstractmethod
    def set_alias(self, name: str, alias: str, version: int | str, user: str | None = None) -> ModelVersion:
        """Point `alias` at a version (moving it if it pointed elsewhere), after the gates pass."""

    @abc.abstractmethod
    def delete_alias(self, name: str, alias: str, user: str | None = None) -> None: ...

    @abc.abstractmethod
    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...

    # gates -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def set_gate_policy(self, name: str, policy: GatePolicy) -> GatePolicy:
        """Replace the model's promotion policy (its rules are checked now, not at the next promotion)."""

    @abc.abstractmethod
    def get_gate_policy(self, name: str) -> GatePolicy: ...

    @abc.abstractmethod
    def check_gates(self, name: str, version: int | str, target: str) -> list[GateCheck]:
        """A dry run: how each rule fares if `version` moved to `target` (a stage name or `@alias`)."""

    # events ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def list_events(
        self, name: str | None = None, after_id: int = 0, max_results: int = 100
    ) -> list[RegistryEvent]:
        """Oldest first, after event `after_id`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
