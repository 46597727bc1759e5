"""The admission rules the operators' webhooks enforce and the CRD schemas do not carry, per kind.

Each rule takes a manifest and returns its problems as (path, message); `validate` runs the rules of the
manifest's group and kind after the schema. Add a kind with `@rule("group", "Kind")`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelyard.kube.validate import Rule, dns1035_label_problem, split_api_version

_RULES: dict[tuple[str, str], list[Rule]] = {}


def rule(group: str, kind: str) -> Callable[[Rule], Rule]:
    def register(func: Rule) -> Rule:
        _RULES.setdefault((group, kind), []).append(func)
        return func

    return register


def rules_for(api_version: str, kind: str) -> list[Rule]:
    return list(_RULES.get((split_api_version(api_version)[0], kind), []))


# -- KServe InferenceService (kserve/kserve pkg/apis/serving/v1beta1/inference_service_validation.go) ------

KSERVE_GROUP = "serving.kserve.io"
# The predictor "implementations": a framework/model spec, or (when none is given) custom containers.
PREDICTOR_IMPLEMENTATIONS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)
_COMPONENTS = ("predictor", "transformer", "explainer")


@rule(KSERVE_GROUP, "InferenceService")
def inference_service_name(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The name is a DNS-1035 label of at most 63 characters (it becomes a Knative service and a host name)."""
    name = (manifest.get("metadata") or {}).get("name")
    if isinstance(name, str) and name and (problem := dns1035_label_problem(name)):
        return [("metadata.name", problem)]
    return []


@rule(KSERVE_GROUP, "InferenceService")
def one_predictor_implementation(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Exactly one predictor implementation: one framework/model spec, or custom containers alone."""
    predictor = (manifest.get("spec") or {}).get("predictor")
    if not isinstance(predictor, Mapping):
        return [("spec.predictor", "required")]
    chosen = [key for key in PREDICTOR_IMPLEMENTATIONS if predictor.get(key) is not None]
    if len(chosen) > 1:
        return [("spec.predictor", f"exactly one implementation is allowed, found {', '.join(chosen)}")]
    if not chosen and not predictor.get("containers"):
        return [
            (
                "spec.predictor",
                "exactly one implementation is required: a model/framework spec or containers",
            )
        ]
    return []


@rule(KSERVE_GROUP, "InferenceService")
def component_extensions(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """canaryTrafficPercent in 0..100; replica bounds ≥ 0 and minReplicas ≤ maxReplicas (maxReplicas 0: the
    default, no bound); a cpu scaleTarget is a utilization percentage (1..100); batcher sizes are positive."""
    found: list[tuple[str, str]] = []
    spec = manifest.get("spec") or {}
    for component in _COMPONENTS:
        part = spec.get(component)
        if not isinstance(part, Mapping):
            continue
        at = f"spec.{component}"
        canary = part.get("canaryTrafficPercent")
        if isinstance(canary, int) and not 0 <= canary <= 100:
            found.append((f"{at}.canaryTrafficPercent", f"{canary} is not a percentage (0..100)"))
        low, high = part.get("minReplicas"), part.get("maxReplicas")
        for key, value in (("minReplicas", low), ("maxReplicas", high)):
            if isinstance(value, int) and value < 0:
                found.append((f"{at}.{key}", f"{value} is negative"))
        if isinstance(low, int) and isinstance(high, int) and high > 0 and low > high:
            found.append((f"{at}.minReplicas", f"{low} is more than maxReplicas ({high})"))
        target = part.get("scaleTarget")
        if isinstance(target, int):
            if target < 1:
                found.append((f"{at}.scaleTarget", f"{target} must be at least 1"))
            elif part.get("scaleMetric") == "cpu" and target > 100:
                found.append(
                    (f"{at}.scaleTarget", f"{target}: a cpu target is a utilization percentage (1..100)")
                )
        concurrency = part.get("containerConcurrency")
        if isinstance(concurrency, int) and concurrency < 0:
            found.append((f"{at}.containerConcurrency", f"{concurrency} is negative"))
        batcher = part.get("batcher")
        if isinstance(batcher, Mapping):
            for key in ("maxBatchSize", "maxLatency", "timeout"):
                value = batcher.get(key)
                if isinstance(value, int) and value < 1:
                    found.append((f"{at}.batcher.{key}", f"{value} must be at least 1"))
    return found
