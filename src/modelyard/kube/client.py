"""Submit custom resources with the `kubernetes` client (the `kube` extra): create, or update in place when the
object exists, with the API server's errors turned into Modelyard errors.

The client is configured from `kubeconfig` (a file), else the default loader (`KUBECONFIG`, `~/.kube/config`),
else the in-cluster service account. Nothing is written to the client's global configuration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    ModelyardError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from modelyard.kube.validate import split_api_version

_INSTALL_HINT = "Submitting to Kubernetes needs the kubernetes client: pip install 'modelyard[kube]'."


@dataclass(frozen=True)
class Cluster:
    """A configured API client and the namespace the kubeconfig context names (or "default")."""

    api_client: Any
    namespace: str
    context: str | None


@dataclass(frozen=True)
class Applied:
    """What `apply` did: "created" or "updated", and the object the API server returned."""

    action: str
    namespace: str
    name: str
    resource: dict[str, Any]


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """An API client from `kubeconfig` (or the default locations, or the in-cluster service account)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError as exc:
        raise InvalidArgument(_INSTALL_HINT) from exc
    # KUBECONFIG is read now (the client reads it once, at import); a list of files (a:b) is merged.
    files = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        contexts, active = config.list_kube_config_contexts(config_file=files)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        if chosen is None:
            names = ", ".join(c.get("name", "?") for c in contexts)
            raise NotFound(f"No context {context!r} in the kubeconfig (it has: {names}).")
        api_client = config.new_client_from_config(config_file=files, context=chosen.get("name"))
        namespace = (chosen.get("context") or {}).get("namespace") or "default"
        return Cluster(api_client, namespace, chosen.get("name"))
    except (ConfigException, OSError) as exc:
        if kubeconfig:
            raise InvalidArgument(f"Cannot use the kubeconfig {kubeconfig}: {exc}") from exc
        kube_error = exc
    try:  # no kubeconfig: running inside a pod?
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        raise Unavailable(
            f"No Kubernetes cluster configured: {kube_error}. Pass --kubeconfig FILE, set KUBECONFIG, "
            "or run inside a cluster."
        ) from None
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as file:
            namespace = file.read().strip() or "default"
    except OSError:
        namespace = "default"
    return Cluster(client.ApiClient(configuration), namespace, None)


def plural_of(kind: str) -> str:
    """The resource name of a kind, as the CRDs here spell it (InferenceService -> inferenceservices)."""
    lower = kind.lower()
    return lower + ("es" if lower.endswith(("s", "x", "ch", "sh")) else "s")


# Optional fields a re-apply must remove when the new manifest leaves them out: a JSON merge patch keeps what
# it does not mention, and a stale canaryTrafficPercent or replica bound would silently survive.
def _with_removals(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(old.get(key), Mapping):
            patch[key] = _with_removals(value, old[key])
        else:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def apply(
    manifest: Mapping[str, Any],
    *,
    namespace: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    cluster: Cluster | None = None,
) -> Applied:
    """Create the custom resource, or, when it exists, merge-patch it so that it matches `manifest`: under
    `spec` (and the manifest's own labels/annotations) what the new manifest leaves out is removed; what
    others added elsewhere (status, finalizers, other labels) is kept."""
    try:
        from kubernetes import client
    except ImportError as exc:
        raise InvalidArgument(_INSTALL_HINT) from exc
    cluster = cluster or connect(kubeconfig, context)
    group, version = split_api_version(str(manifest["apiVersion"]))
    kind = str(manifest["kind"])
    plural = plural_of(kind)
    body = json.loads(json.dumps(manifest))
    metadata = body.setdefault("metadata", {})
    name = metadata["name"]
    namespace = namespace or metadata.get("namespace") or cluster.namespace
    metadata["namespace"] = namespace
    api = client.CustomObjectsApi(cluster.api_client)
    where = f"{kind} {name!r} in namespace {namespace!r}"
    try:
        try:
            created = api.create_namespaced_custom_object(group, version, namespace, plural, body)
            return Applied("created", namespace, name, created)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        current = api.get_namespaced_custom_object(group, version, namespace, plural, name)
        patch = {"metadata": {k: v for k, v in metadata.items() if k in ("labels", "annotations")}}
        patch["spec"] = _with_removals(body.get("spec", {}), current.get("spec") or {})
        patched = api.patch_namespaced_custom_object(group, version, namespace, plural, name, patch)
        return Applied("updated", namespace, name, patched)
    except client.ApiException as exc:
        raise api_error(exc, where, f"{group}/{version}", plural) from None
    except ModelyardError:
        raise
    except Exception as exc:  # urllib3 connection errors after the client's retries
        host = getattr(cluster.api_client.configuration, "host", "the API server")
        raise Unavailable(f"Cannot reach the Kubernetes API at {host}: {_first_line(exc)}") from None


def api_error(exc: Any, where: str, group_version: str, plural: str) -> ModelyardError:
    """A Modelyard error for an `ApiException`, with the API server's own message."""
    message = _status_message(exc)
    status = exc.status or 0
    if status == 401:
        return Unauthenticated(f"The Kubernetes API refused the credentials: {message}")
    if status == 403:
        return PermissionDenied(f"Not allowed to write {where}: {message}")
    if status == 404:
        return NotFound(
            f"The cluster does not serve {plural}.{group_version} ({message}): is the operator (its CRD) "
            "installed, and does the namespace exist?"
        )
    if status == 409:
        return (
            AlreadyExists(f"{where}: {message}") if "exists" in message else Conflict(f"{where}: {message}")
        )
    if status in (400, 422):
        return InvalidArgument(f"The API server rejected {where}: {message}")
    if status >= 500 or status == 0:
        return Unavailable(f"The Kubernetes API failed ({status}): {message}")
    return ModelyardError(f"The Kubernetes API answered {status} for {where}: {message}")


def _status_message(exc: Any) -> str:
    try:
        status = json.loads(exc.body)
        return str(status.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason or exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
