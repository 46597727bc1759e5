"""The model registry: versions of named models, stages, aliases, promotion gates and events."""

from __future__ import annotations

from typing import Any

from modelyard.registry.client import RegistryClient
from modelyard.registry.uris import model_version_for, resolve_model_uri
from modelyard.schemas.registry import ModelVersion


def register_model(
    model_uri: str, name: str, description: str = "", tags: dict[str, Any] | None = None, **kwargs: Any
) -> ModelVersion:
    """Register the model at `model_uri` (e.g. runs:/<run_id>/model) as a new version of `name`."""
    return RegistryClient().register_model(model_uri, name, description, tags, **kwargs)


__all__ = ["RegistryClient", "model_version_for", "register_model", "resolve_model_uri"]
