"""Kubernetes: manifests checked against the CRD schemas (`validate`) and submitted with the kubernetes client
(`apply`, the `kube` extra). Imports nothing heavy until used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Bound eagerly (the module is light): the name `validate` is the function, not its module.
from modelyard.kube.validate import crd_schema, problems, validate

if TYPE_CHECKING:
    from modelyard.kube.client import Applied, Cluster, apply, connect

__all__ = ["Applied", "Cluster", "apply", "connect", "crd_schema", "problems", "to_yaml", "validate"]

_LAZY = {
    "Applied": "modelyard.kube.client",
    "Cluster": "modelyard.kube.client",
    "apply": "modelyard.kube.client",
    "connect": "modelyard.kube.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelyard.kube' has no attribute {name!r}")


def to_yaml(*manifests: Any) -> str:
    """Manifests as one YAML stream (`---` between documents), keys in the order they were built."""
    import yaml

    return "---\n".join(yaml.safe_dump(m, sort_keys=False, default_flow_style=False) for m in manifests)
