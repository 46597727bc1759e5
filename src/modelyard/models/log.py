"""`log_model`: save a model into a run's artifacts and (optionally) register it."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.artifacts import normalize_artifact_path
from modelyard.errors import AlreadyExists, InvalidArgument, InvalidState
from modelyard.models.flavors.base import Flavor
from modelyard.models.save import save_model
from modelyard.schemas.models import ModelSignature

if TYPE_CHECKING:
    from modelyard.tracking.client import Client


@dataclass(frozen=True)
class ModelInfo:
    """What `log_model` wrote: `model_uri` (`runs:/<run_id>/<artifact_path>`) loads it back."""

    model_uri: str
    run_id: str
    artifact_path: str
    flavors: dict[str, dict[str, Any]]
    signature: ModelSignature | None
    requirements: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    registered_model_version: Any = None

    @property
    def flavor(self) -> str:
        return next(iter(self.flavors))


def log_model(
    model: Any,
    name: str,
    signature: ModelSignature | Mapping[str, Any] | bool | None = None,
    input_example: Any = None,
    requirements: Sequence[str] | str | Path | None = None,
    metadata: Mapping[str, Any] | None = None,
    flavor: str | Flavor | None = None,
    registered_model_name: str | None = None,
    trusted: bool = True,
    *,
    run_id: str | None = None,
    **flavor_options: Any,
) -> ModelInfo:
    """Save `model` under artifact path `name` of the active run (or of `run_id`); see `save_model` for the
    arguments. With `registered_model_name`, the logged model also becomes a new version of that
    registered model."""
    path = normalize_artifact_path(name)
    if not path:
        raise InvalidArgument(
            "log_model needs a name: the artifact path to save the model under, e.g. 'model'."
        )
    client, run_id = _target(run_id)
    if client.artifact_store(run_id).exists(path):
        raise AlreadyExists(
            f"Run {run_id} already has artifacts at {path!r}; log the model under another name."
        )
    with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
        folder = Path(tmp) / "model"
        config = save_model(
            model,
            folder,
            signature=signature,
            input_example=input_example,
            requirements=requirements,
            metadata=metadata,
            flavor=flavor,
            trusted=trusted,
            run_id=run_id,
            artifact_path=path,
            **flavor_options,
        )
        client.log_artifacts(run_id, folder, path)
    info = ModelInfo(
        model_uri=f"runs:/{run_id}/{path}",
        run_id=run_id,
        artifact_path=path,
        flavors=config.flavors,
        signature=config.signature,
        requirements=config.requirements,
        metadata=config.metadata,
        created=config.created,
    )
    if registered_model_name is not None:
        from modelyard.registry import register_model

        signature_json = None if info.signature is None else info.signature.model_dump(mode="json")
        version = register_model(info.model_uri, registered_model_name, signature=signature_json)
        info = replace(info, registered_model_version=version)
    return info


def _target(run_id: str | None) -> tuple[Client, str]:
    from modelyard.tracking import fluent

    active = fluent.active_run()
    if run_id is None:
        if active is None:
            raise InvalidState(
                "log_model needs a run: call it inside `with modelyard.start_run():` or pass run_id=..."
            )
        return active.client, active.run_id
    if active is not None and active.run_id == run_id:
        return active.client, run_id
    return fluent.get_client(), run_id
