"""Modelyard's entities as MLflow's REST JSON, and MLflow's tags and datasets as Modelyard's.

A few MLflow tags are really run attributes. They are kept in the attribute, never stored twice, so the
two APIs cannot disagree: `mlflow.runName` is the run's name, `mlflow.note.content` its description, and
`mlflow.user` is stored under Modelyard's own `modelyard.user` tag (what the `attributes.user` filter reads).
Reading a run through the MLflow API shows them as tags again, as MLflow's client expects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas import Dataset, DatasetInput, Experiment, Metric, Run, RunInfo, RunTag
from modelyard.schemas.registry import ModelVersion, RegisteredModel
from modelyard.server.mlflow_compat.route import Params, as_int, float_out

RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
USER_TAG = "mlflow.user"
PARENT_TAG = "mlflow.parentRunId"
MODELYARD_USER_TAG = "modelyard.user"
CONTEXT_TAG = "mlflow.data.context"
ARTIFACT_SCHEME = "mlflow-artifacts:"

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")  # MLflow's enum order, 1-based
VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")


# artifact locations ---------------------------------------------------------------------------------------
def experiment_artifact_uri(experiment_id: str) -> str:
    """What MLflow clients see: every artifact goes through this server's mlflow-artifacts proxy."""
    return f"{ARTIFACT_SCHEME}/{experiment_id}"


def run_artifact_uri(experiment_id: str, run_id: str) -> str:
    return f"{ARTIFACT_SCHEME}/{experiment_id}/{run_id}/artifacts"


# experiments ----------------------------------------------------------------------------------------------
def experiment_location(exp: Experiment, default_root: str) -> str:
    """What MLflow clients see as an experiment's artifact location: the artifact proxy's URI for the
    server's default location (`<default_root>/<experiment_id>`), an explicit location as it was given."""
    if exp.artifact_location.rstrip("/") == f"{default_root.rstrip('/')}/{exp.experiment_id}":
        return experiment_artifact_uri(exp.experiment_id)
    return exp.artifact_location


def experiment_json(exp: Experiment, default_root: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": experiment_location(exp, default_root),
        "lifecycle_stage": exp.lifecycle_stage.value,
        "tags": pairs(exp.tags),
    }
    if exp.creation_time is not None:
        body["creation_time"] = exp.creation_time
    if exp.last_update_time is not None:
        body["last_update_time"] = exp.last_update_time
    return body


# runs -----------------------------------------------------------------------------------------------------
OUTPUT_TAG = "modelyard.model_output."  # + a logged model's id: the run logged it (value: the step)


def mlflow_tags(info: RunInfo, stored: Mapping[str, str]) -> dict[str, str]:
    """The stored tags plus the attribute-backed MLflow tags (model outputs are not tags in MLflow)."""
    tags = {k: v for k, v in stored.items() if not k.startswith(OUTPUT_TAG)}
    tags[RUN_NAME_TAG] = info.run_name
    if info.description:
        tags[NOTE_TAG] = info.description
    if MODELYARD_USER_TAG in stored:
        tags.setdefault(USER_TAG, stored[MODELYARD_USER_TAG])
    if info.parent_run_id:
        tags.setdefault(PARENT_TAG, info.parent_run_id)
    return tags


def run_info_json(info: RunInfo, stored_tags: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,  # older clients read this name
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "user_id": stored_tags.get(USER_TAG) or stored_tags.get(MODELYARD_USER_TAG) or "",
        "status": info.status.value,
        "start_time": info.start_time,
        "artifact_uri": run_artifact_uri(info.experiment_id, info.run_id),
        "lifecycle_stage": info.lifecycle_stage.value,
    }
    if info.end_time is not None:  # absent, not 0: MLflow's client reads a missing end time as None
        body["end_time"] = info.end_time
    return body


def metric_json(m: Metric) -> dict[str, Any]:
    return {"key": m.key, "value": float_out(m.value), "timestamp": m.timestamp, "step": m.step}


def run_json(run: Run, latest: Sequence[Metric] | None = None) -> dict[str, Any]:
    """`latest`: the run's latest metric points with their step and timestamp. Search results pass None:
    a run's summary holds only each metric's latest value, so step and timestamp read 0 there."""
    metrics = (
        [metric_json(m) for m in latest]
        if latest is not None
        else [
            {"key": k, "value": float_out(v), "timestamp": 0, "step": 0} for k, v in run.data.metrics.items()
        ]
    )
    body: dict[str, Any] = {
        "info": run_info_json(run.info, run.data.tags),
        "data": {
            "metrics": metrics,
            "params": pairs(run.data.params),
            "tags": pairs(mlflow_tags(run.info, run.data.tags)),
        },
        "inputs": {"dataset_inputs": [dataset_input_json(i) for i in run.inputs]},
    }
    outputs = [
        {"model_id": key[len(OUTPUT_TAG) :], "step": int(step) if step.lstrip("-").isdigit() else 0}
        for key, step in run.data.tags.items()
        if key.startswith(OUTPUT_TAG)
    ]
    if outputs:
        body["outputs"] = {"model_outputs": outputs}
    return body


@dataclass
class TagWrites:
    """MLflow tags sorted into what is stored as tags and what changes run attributes."""

    tags: list[RunTag] = field(default_factory=list)
    run_name: str | None = None
    description: str | None = None

    @property
    def attributes(self) -> bool:
        return self.run_name is not None or self.description is not None


def tag_writes(pairs: Iterable[tuple[str, str]]) -> TagWrites:
    out = TagWrites()
    for key, value in pairs:
        if key == RUN_NAME_TAG:
            out.run_name = value
        elif key == NOTE_TAG:
            out.description = value
        else:
            out.tags.append(RunTag(key=MODELYARD_USER_TAG if key == USER_TAG else key, value=value))
    return out


def key_values(items: Sequence[Params]) -> list[tuple[str, str]]:
    """`[{key, value}]` messages (params or tags) as pairs; a missing value is the empty string."""
    return [(item.required("key"), item.string("value", "") or "") for item in items]


def pairs(mapping: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in mapping.items()]


# datasets -------------------------------------------------------------------------------------------------
_RAW_SCHEMA = "mlflow_schema"  # key under which a schema we cannot map is kept verbatim
_MLFLOW_TYPES = {
    "int64": "long", "int32": "integer", "float64": "double", "float32": "float", "bool": "boolean",
    "object": "string", "string": "string", "datetime64[ns]": "datetime", "bytes": "binary",
}  # fmt: skip


def dataset_input_json(item: DatasetInput) -> dict[str, Any]:
    ds = item.dataset
    dataset: dict[str, Any] = {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type or "",
        "source": _source_out(ds.source, ds.source_type),
    }
    if ds.schema_ is not None:
        dataset["schema"] = _schema_out(ds.schema_)
    if ds.profile is not None:
        dataset["profile"] = ds.profile
    elif ds.num_rows is not None:
        dataset["profile"] = json.dumps({"num_rows": ds.num_rows})
    tags = [{"key": CONTEXT_TAG, "value": item.context}] if item.context else []
    return {"tags": tags, "dataset": dataset}


def dataset_input_from(msg: Params) -> DatasetInput:
    ds = msg.message("dataset")
    if ds is None:
        raise InvalidArgument("Missing value for required parameter 'dataset'.")
    context = next((v for k, v in key_values(msg.messages("tags")) if k == CONTEXT_TAG), None)
    profile = _json_object(ds.string("profile"))
    return DatasetInput(
        context=context or None,
        dataset=Dataset(
            name=ds.required("name"),
            digest=ds.required("digest"),
            source_type=ds.string("source_type"),
            source=_source_in(ds.string("source")),
            schema=_schema_in(ds.string("schema")),
            num_rows=as_int(profile.get("num_rows"), "profile.num_rows") if profile else None,
            profile=ds.string("profile") or None,
        ),
    )


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_MODELYARD_SOURCE_TYPES = {"file", "directory", "pandas", "numpy", "pyarrow"}  # tracking/datasets.py's


def _source_in(text: str | None) -> str | None:
    """MLflow's source (JSON text, or whatever the client sent) is kept exactly as sent."""
    return text or None


def _source_out(source: str | None, source_type: str | None) -> str:
    """A source as MLflow sent it; a bare URI that Modelyard's SDK logged as MLflow's `{"uri": ...}`."""
    if source is None:
        return "{}"
    if _json_object(source) is None and source_type in _MODELYARD_SOURCE_TYPES:
        return json.dumps({"uri": source})
    return source


def _schema_in(text: str | None) -> dict[str, str] | None:
    """A column schema becomes Modelyard's {column: type}; anything else is kept verbatim."""
    obj = _json_object(text)
    if obj is None:
        return {_RAW_SCHEMA: text} if text else None
    cols = obj.get("mlflow_colspec")
    simple = (
        set(obj) == {"mlflow_colspec"}
        and isinstance(cols, list)
        and all(
            isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and isinstance(c.get("type"), str)
            and c.get("required", True) is True
            and set(c) <= {"name", "type", "required"}
            for c in cols
        )
    )
    if simple:
        return {c["name"]: c["type"] for c in cols}  # type: ignore[union-attr]
    assert text is not None
    return {_RAW_SCHEMA: text}


def _schema_out(schema: Mapping[str, str]) -> str:
    if set(schema) == {_RAW_SCHEMA}:
        return schema[_RAW_SCHEMA]
    if set(schema) == {"dtype", "shape"}:  # Modelyard's numpy description: a tensor spec in MLflow
        try:
            shape = [-1, *json.loads(schema["shape"])[1:]]
        except (ValueError, TypeError):
            shape = [-1]
        spec = [{"type": "tensor", "tensor-spec": {"dtype": schema["dtype"], "shape": shape}}]
        return json.dumps({"mlflow_tensorspec": {"features": json.dumps(spec), "targets": None}})
    cols = [{"type": _MLFLOW_TYPES.get(t, t), "name": n, "required": True} for n, t in schema.items()]
    return json.dumps({"mlflow_colspec": cols})


# model registry -------------------------------------------------------------------------------------------
# MLflow 3's logged models live in the artifact store (see logged_models.py), under their experiment's
# artifact root; their id carries the experiment's, so finding one takes no search:
# m-<32 hex digits>-<experiment_id>.
LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}-([0-9]{1,19})")
LOGGED_MODELS_FOLDER = "models"
_LOGGED_MODEL_FILES = re.compile(
    rf"/?([0-9]{{1,19}})/{LOGGED_MODELS_FOLDER}/(m-[0-9a-f]{{32}}-([0-9]{{1,19}}))/artifacts(?:/.*)?"
)


def logged_model_artifact_uri(model_id: str) -> str:
    """Where an MLflow client reads and writes a logged model's files: the artifact proxy."""
    experiment_id = logged_model_experiment(model_id)
    return f"{ARTIFACT_SCHEME}/{experiment_id}/{LOGGED_MODELS_FOLDER}/{model_id}/artifacts"


def logged_model_experiment(model_id: str) -> str:
    match = LOGGED_MODEL_ID.fullmatch(model_id)
    if match is None or int(match[1]) >= 2**63:  # past int64 no experiment id goes
        raise NotFound(
            f"No logged model with id {model_id!r} (Modelyard's look like m-<32 hex digits>-<number>)."
        )
    return match[1]


def logged_model_of(source: str) -> str | None:
    """The logged model a version's source names: `models:/<model_id>`, or a path under the model's
    files on the artifact proxy (`mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts/...`)."""
    if source.startswith("models:/") and LOGGED_MODEL_ID.fullmatch(source[len("models:/") :]):
        return source[len("models:/") :]
    if source.startswith(ARTIFACT_SCHEME):
        match = _LOGGED_MODEL_FILES.fullmatch(source[len(ARTIFACT_SCHEME) :])
        if match and match[3] == match[1]:
            return match[2]
    return None


def model_version_json(mv: ModelVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": mv.name,
        "version": str(mv.version),
        "creation_timestamp": mv.creation_time,
        "last_updated_timestamp": mv.last_updated_time,
        "user_id": mv.created_by or "",
        "current_stage": mv.stage.value,
        "description": mv.description,
        "source": mv.source,
        "status": mv.status.value,
        "tags": pairs(mv.tags),
        "aliases": list(mv.aliases),
    }
    if mv.run_id:
        body["run_id"] = mv.run_id
    model_id = logged_model_of(mv.source)
    if model_id is not None:
        body["model_id"] = model_id
    return body


def registered_model_json(rm: RegisteredModel) -> dict[str, Any]:
    return {
        "name": rm.name,
        "creation_timestamp": rm.creation_time,
        "last_updated_timestamp": rm.last_updated_time,
        "description": rm.description,
        "latest_versions": [model_version_json(mv) for mv in rm.latest_versions],
        "tags": pairs(rm.tags),
        "aliases": [{"alias": alias, "version": str(version)} for alias, version in rm.aliases.items()],
    }


_FILTER_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|[A-Za-z_][\w.]*""")


def mlflow_filter(text: str | None, renames: Mapping[str, str]) -> str | None:
    """An MLflow registry filter in the words of Modelyard's registry filter: `attributes.` prefixes
    dropped and MLflow's attribute names renamed (e.g. version_number -> version). Quoted text is kept."""
    if not text:
        return text

    def rename(match: re.Match[str]) -> str:
        word = match[0]
        if word[0] in "'\"`":
            return word
        bare = word.split(".", 1)[1] if word.lower().startswith(("attributes.", "attribute.")) else word
        return renames.get(bare.lower(), bare)

    return _FILTER_TOKEN.sub(rename, text)
