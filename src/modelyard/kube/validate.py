"""Check a custom resource manifest the way the API server would: against its CustomResourceDefinition's
OpenAPI v3 schema (the CRD files of `../shared/crds/`, or `MODELYARD_CRDS_DIR`), then the object-meta rules and
the admission-webhook rules that a schema does not carry (`modelyard.kube.rules`).

The OpenAPI schema becomes a JSON Schema (draft 4, which OpenAPI 3.0 follows) with Kubernetes' extensions read
as the API server reads them:

- a field a structural schema does not declare would be pruned without a word, so here it is an error, except
  under `x-kubernetes-preserve-unknown-fields: true` (and the fields an `x-kubernetes-embedded-resource` has);
- `x-kubernetes-int-or-string`: an integer or a string;
- `x-kubernetes-list-type: set`: unique items; `map`: items unique by `x-kubernetes-list-map-keys` (a missing
  key counts as its default);
- `format: int32 / int64`: the integer fits;
- `x-kubernetes-validations` (CEL) are not evaluated: the rules a manifest relies on are written in Python in
  `modelyard.kube.rules`.

`validate(manifest)` raises `InvalidArgument` naming the path that fails (`spec.predictor.minReplicas: ...`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument, NotFound

CRDS_ENV = "MODELYARD_CRDS_DIR"
# ../shared/crds next to the checkout this package runs from (src/modelyard/kube/validate.py -> repo/..).
_CHECKOUT_CRDS = Path(__file__).resolve().parents[4] / "shared" / "crds"
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_MAX_ERRORS_SHOWN = 5

# A rule: (manifest) -> problems as (path, message); path as written by `format_path`.
Rule = Callable[[Mapping[str, Any]], list[tuple[str, str]]]


def crds_dir() -> Path | None:
    """The folder of CRD files: `MODELYARD_CRDS_DIR`, else `../shared/crds` next to this checkout (None
    when neither exists, e.g. in an installed wheel)."""
    configured = os.environ.get(CRDS_ENV)
    if configured:
        return Path(configured)
    return _CHECKOUT_CRDS if _CHECKOUT_CRDS.is_dir() else None


def split_api_version(api_version: str) -> tuple[str, str]:
    """(group, version) of `group/version` (the core group is "")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def crd_path(api_version: str, kind: str, directory: Path | None = None) -> Path:
    """The CRD file that defines `kind` in `api_version`, named `<kind>.<group>.<version>.yaml`."""
    folder = directory or crds_dir()
    if folder is None or not folder.is_dir():
        raise NotFound(
            f"No CRD folder to validate {kind} against: set {CRDS_ENV} to a folder of CustomResourceDefinition "
            "files (e.g. ../shared/crds)."
        )
    group, version = split_api_version(api_version)
    path = folder / f"{kind.lower()}.{group}.{version}.yaml"
    if not path.is_file():
        raise NotFound(f"No CRD for {kind} ({api_version}) in {folder}: expected {path.name}.")
    return path


@functools.lru_cache(maxsize=8)
def _load_schema(path: Path, version: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as file:
        crd = yaml.load(file, Loader=loader)  # a safe loader (the C one when built)
    for entry in crd.get("spec", {}).get("versions", []):
        if entry.get("name") == version:
            schema = entry.get("schema", {}).get("openAPIV3Schema")
            if not isinstance(schema, dict):
                raise NotFound(f"{path.name}: version {version} has no openAPIV3Schema.")
            return to_json_schema(schema, root=True)
    raise NotFound(f"{path.name} does not define version {version}.")


def crd_schema(api_version: str, kind: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 4, Kubernetes' extensions applied) of `kind` in `api_version`; cached."""
    return _load_schema(crd_path(api_version, kind, directory), split_api_version(api_version)[1])


def to_json_schema(schema: Mapping[str, Any], *, root: bool = False) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as a JSON Schema that rejects what the API server would prune."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key == "not" or (key == "additionalProperties" and isinstance(value, Mapping)):
            out[key] = to_json_schema(value)
        elif key in ("x-kubernetes-validations", "example", "description"):
            continue  # CEL is not evaluated here (defaults stay: list-map keys fall back to them)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if out.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
    if root:
        # ObjectMeta is checked by the API server itself (and here by `metadata_problems`), not by the CRD.
        props = out.setdefault("properties", {})
        props["metadata"] = {"type": "object"}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
    if (
        out.get("type") == "object"
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def format_path(parts: Any) -> str:
    """`spec.predictor.containers[0].env[1]` from a sequence of keys and indexes."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f"[{str(part)!r}]"
    return text or "(the manifest)"


def _validator_class() -> Any:
    try:
        from jsonschema import validators
        from jsonschema.exceptions import ValidationError
    except ImportError as exc:  # pragma: no cover - jsonschema comes with the kube extra
        raise InvalidArgument(
            "Validating Kubernetes manifests needs jsonschema: pip install 'modelyard[kube]'."
        ) from exc

    def list_type(validator: Any, value: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
        if not isinstance(instance, list) or value not in ("set", "map"):
            return
        seen: dict[str, int] = {}
        for index, item in enumerate(instance):
            if value == "set":
                key = repr(item)
            else:
                if not isinstance(item, Mapping):
                    continue
                props = schema.get("items", {}).get("properties", {})
                names = schema.get("x-kubernetes-list-map-keys", [])
                key = repr([item.get(name, props.get(name, {}).get("default")) for name in names])
            if key in seen:
                what = (
                    "item"
                    if value == "set"
                    else "key " + ", ".join(schema.get("x-kubernetes-list-map-keys", []))
                )
                yield ValidationError(f"duplicate {what}: items {seen[key]} and {index} are the same")
            seen.setdefault(key, index)

    def integer_format(validator: Any, value: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
        bounds = _INT_RANGES.get(value)
        in_range = not bounds or not isinstance(instance, int) or bounds[0] <= instance <= bounds[1]
        if not in_range and not isinstance(instance, bool):
            yield ValidationError(f"{instance} does not fit in {value}")

    base = validators.Draft4Validator
    return validators.extend(base, {"x-kubernetes-list-type": list_type, "format": integer_format})


@functools.lru_cache(maxsize=8)
def _validator(path: Path, version: str) -> Any:
    return _validator_class()(_load_schema(path, version))


def schema_problems(manifest: Mapping[str, Any], directory: Path | None = None) -> list[tuple[str, str]]:
    """What the CRD schema of the manifest's kind rejects, as (path, message)."""
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [("apiVersion", "apiVersion and kind must be strings")]
    path = crd_path(api_version, kind, directory)
    validator = _validator(path, split_api_version(api_version)[1])
    errors = sorted(
        validator.iter_errors(manifest), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    return [(format_path(error.absolute_path), _short(error)) for error in errors]


def _short(error: Any) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        return error.message.replace("Additional properties are not allowed", "unknown field(s)")
    if error.validator == "pattern" and "[KMGTPE]i" in str(error.validator_value):
        return f"{error.instance!r} is not a Kubernetes quantity (e.g. 2, 500m, 4Gi)"
    if error.validator == "anyOf" and error.schema.get("x-kubernetes-int-or-string"):
        return f"{error.instance!r} is not an integer or a quantity string"
    return str(error.message)


# -- object metadata (the API server's own checks) ----------------------------------------------------------

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_MAX_ANNOTATIONS_BYTES = 256 * 1024


_QUANTITY = re.compile(
    r"[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"
)


def is_quantity(text: str) -> bool:
    """Whether `text` is a Kubernetes resource quantity (2, 500m, 4Gi, 1e3)."""
    return bool(_QUANTITY.fullmatch(text))


def dns1035_label_problem(name: str) -> str | None:
    """Why `name` is not a DNS-1035 label (None when it is one)."""
    if len(name) > 63:
        return f"{name!r} is longer than 63 characters"
    if not _DNS1035_LABEL.fullmatch(name):
        return (
            f"{name!r} is not a DNS-1035 label: lower-case letters, digits and '-', starting with a letter "
            "and ending with a letter or digit"
        )
    return None


def dns1035_label(text: str) -> str:
    """`text` made into a DNS-1035 label (a suggestion for names that are not one)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)
    if not label or not label[0].isalpha():
        label = "m-" + label
    return label[:63].rstrip("-")


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        return (
            f"{value!r} is not a label value (at most 63 letters, digits, '-', '_', '.'; alphanumeric ends)"
        )
    return None


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"{key!r} is not a string"
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return f"{key!r}: the prefix must be a DNS subdomain"
    if len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return f"{key!r} is not a qualified name"
    return None


def metadata_problems(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ObjectMeta checks every object gets: name, namespace, labels and annotations."""
    problems: list[tuple[str, str]] = []
    meta = manifest.get("metadata")
    if not isinstance(meta, Mapping):
        return [("metadata", "required (an object with a name)")]
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append(("metadata.name", "required"))
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        problems.append(("metadata.name", f"{name!r} is not a DNS subdomain name"))
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS1123_LABEL.fullmatch(namespace)
    ):
        problems.append(("metadata.namespace", f"{namespace!r} is not a DNS-1123 label"))
    for field in ("labels", "annotations"):
        entries = meta.get(field)
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            problems.append((f"metadata.{field}", "must be a map of strings"))
            continue
        for key, value in entries.items():
            problem = _key_problem(key)
            if problem is None and field == "labels":
                problem = label_value_problem(value)
            elif problem is None and not isinstance(value, str):
                problem = f"{value!r} is not a string"
            if problem:
                problems.append((format_path(["metadata", field, key]), problem))
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
        if size > _MAX_ANNOTATIONS_BYTES:
            problems.append(("metadata.annotations", f"{size} bytes, more than 256 KiB"))
    return problems


# -- entry point -----------------------------------------------------------------------------------------


def problems(
    manifest: Mapping[str, Any], *, schema: bool = True, directory: Path | None = None
) -> list[tuple[str, str]]:
    """Everything wrong with `manifest`, as (path, message): schema, metadata and the kind's webhook rules."""
    from modelyard.kube.rules import rules_for

    if not isinstance(manifest, Mapping):
        return [("(the manifest)", "must be an object")]
    found = schema_problems(manifest, directory) if schema else []
    found += metadata_problems(manifest)
    for rule in rules_for(str(manifest.get("apiVersion")), str(manifest.get("kind"))):
        found += rule(manifest)
    return found


def validate(manifest: Mapping[str, Any], *, schema: bool = True, directory: Path | None = None) -> None:
    """Raise `InvalidArgument` naming the failing path(s) if the API server (CRD schema, object-meta checks)
    or the operator's admission webhook would refuse `manifest`; `schema=False` skips the CRD schema."""
    found = problems(manifest, schema=schema, directory=directory)
    if not found:
        return
    meta = manifest.get("metadata") if isinstance(manifest, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    what = (
        f"{manifest.get('kind', 'The manifest')} {name!r}"
        if name
        else str(manifest.get("kind", "The manifest"))
    )
    lines = [f"{path}: {message}" for path, message in found[:_MAX_ERRORS_SHOWN]]
    more = f" (and {len(found) - _MAX_ERRORS_SHOWN} more)" if len(found) > _MAX_ERRORS_SHOWN else ""
    raise InvalidArgument(f"{what} is not valid: " + "; ".join(lines) + more)
