"""`models:/` URIs: `models:/<name>/<version>`, `models:/<name>@<alias>`, `models:/<name>/<Stage>`
(the newest version in that stage) and `models:/<name>/latest`."""

from __future__ import annotations

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.registry import ModelVersion, Stage

_HELP = "write models:/<name>/<version>, models:/<name>@<alias> or models:/<name>/<stage>"


def model_version_for(uri: str, tracking_uri: str | None = None) -> ModelVersion:
    """The model version a `models:/` URI names."""
    from modelyard.registry.client import RegistryClient

    if not uri.startswith("models:/"):
        raise InvalidArgument(f"{uri!r} is not a models:/ URI: {_HELP}.")
    rest = uri[len("models:/") :].strip("/")
    client = RegistryClient(tracking_uri)
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        if not name or not alias or "/" in alias:
            raise InvalidArgument(f"Cannot read {uri!r}: {_HELP}.")
        return client.get_version_by_alias(name, alias)
    name, _, selector = rest.rpartition("/")
    if not name or not selector:
        raise InvalidArgument(f"Cannot read {uri!r}: {_HELP}.")
    if selector.isdigit():
        return client.get_model_version(name, selector)
    if selector.lower() == "latest":
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
    """The source (artifact URI, e.g. runs:/<run_id>/model) of the version a `models:/` URI names."""
    return model_version_for(uri, tracking_uri).source


def _quote(text: str) -> str:
    return text.replace("'", "''")
