"""`models:/` URIs: `models:/<name>/<version>`, `models:/<name>@<alias>`, `models:/<name>/<Stage>`
(the newest version in that stage) and `models:/<name>/latest`."""

from __future__ import annotations

import re
from typing import NamedTuple

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.registry import ModelVersion, Stage

_HELP = "write models:/<name>/<version>, models:/<name>@<alias> or models:/<name>/<stage>"


class ModelsUri(NamedTuple):
    """What a `models:/` URI says, before the registry is asked: `kind` is version, alias, stage or latest,
    and `value` the version number, alias or stage as written."""

    name: str
    kind: str
    value: str


def parse_models_uri(uri: str) -> ModelsUri:
    """Read a `models:/` URI (InvalidArgument if it is not one)."""
    if not uri.startswith("models:/"):
        raise InvalidArgument(f"{uri!r} is not a models:/ URI: {_HELP}.")
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        if not name or not alias or "/" in alias:
            raise InvalidArgument(f"Cannot read {uri!r}: {_HELP}.")
        return ModelsUri(name, "alias", alias)
    name, _, selector = rest.rpartition("/")
    if not name or not selector:
        raise InvalidArgument(f"Cannot read {uri!r}: {_HELP}.")
    if selector.isdigit():
        return ModelsUri(name, "version", selector)
    return ModelsUri(name, "latest" if selector.lower() == "latest" else "stage", selector)


def model_version_for(uri: str, tracking_uri: str | None = None) -> ModelVersion:
    """The model version a `models:/` URI names."""
    from modelyard.registry.client import RegistryClient

    name, kind, selector = parse_models_uri(uri)
    client = RegistryClient(tracking_uri)
    if kind == "alias":
        return client.get_version_by_alias(name, selector)
    if kind == "version":
        return client.get_model_version(name, selector)
    if kind == "latest":
        versions = client.store.search_model_versions(
            f"name = '{_quote(name)}'", max_results=1
        ).model_versions
        if not versions:
            raise NotFound(f"Model {name!r} has no versions yet.")
        return versions[0]
    stage = Stage.parse(selector)
    found = client.get_latest_versions(name, [stage.value])
    if not found:
        raise NotFound(
            f"No version of {name!r} is in {stage.value}. Promote one first (modelyard models promote)."
        )
    return found[0]


def resolve_model_uri(uri: str, tracking_uri: str | None = None) -> str:
    """Where the files of the version a `models:/` URI names are: its source (e.g. runs:/<run_id>/model), with
    the sources an MLflow client registers (`models:/m-<id>`, `mlflow-artifacts:/...`) mapped to storage."""
    return source_location(model_version_for(uri, tracking_uri).source, tracking_uri)


# An MLflow 3 logged model kept by Modelyard's server: m-<32 hex>-<experiment id>, its files under
# <experiment artifact root>/models/<id>/artifacts (see server/mlflow_compat/logged_models.py).
_LOGGED_MODEL = re.compile(r"models:/(m-[0-9a-f]{32}-([0-9]{1,19}))")
_PROXY = re.compile(r"mlflow-artifacts:/+([0-9]{1,19})(/.*)?")


def source_location(source: str, tracking_uri: str | None = None) -> str:
    """A version's source as an artifact URI the artifact stores read."""
    from modelyard.tracking.client import Client
    from modelyard.tracking.fluent import get_tracking_uri

    if logged := _LOGGED_MODEL.fullmatch(source):
        experiment_id, rest = logged[2], f"/models/{logged[1]}/artifacts"
    elif proxied := _PROXY.fullmatch(source):
        experiment_id, rest = proxied[1], proxied[2] or ""
    else:
        return source
    root = (
        Client(tracking_uri or get_tracking_uri()).get_experiment(experiment_id).artifact_location.rstrip("/")
    )
    return root + rest


def _quote(text: str) -> str:
    return text.replace("'", "''")
