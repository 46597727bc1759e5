"""Step cache: the key of a step execution, and finding an earlier execution with that key whose outputs
still exist.

key = SHA-256 of: the step's name and qualified name, its code fingerprint, the content hash of each input
(literal values hashed as canonical JSON, artifacts by the SHA-256 of their bytes) and its declared
environment (image and env vars). The cache index is the tracking store itself: every executed step run carries
its key and output manifest as tags, so a lookup is one indexed search and the cache works the same on the
embedded store and through a server. A hit whose artifacts were deleted is a miss.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from modelyard.pipelines import records
from modelyard.pipelines.dsl import Step
from modelyard.pipelines.fingerprint import fingerprint
from modelyard.pipelines.serialize import value_hash

CACHE_VERSION = 1


def input_hash(spec: dict[str, Any]) -> str:
    """Content hash of one resolved input (see entrypoint.load_input for the shapes)."""
    if "list" in spec:
        return value_hash([input_hash(item) for item in spec["list"]])
    if "sha256" in spec:  # a file given by path: its content
        return str(spec["sha256"])
    if "value" in spec:
        return value_hash(spec["value"])
    return str(spec["artifact"]["sha256"])


def step_key(step: Step, inputs: dict[str, dict[str, Any]]) -> str:
    payload = {
        "version": CACHE_VERSION,
        "step": step.name,
        "qualname": step.code.qualname,
        "code": fingerprint(step.func),
        "inputs": {name: input_hash(spec) for name, spec in sorted(inputs.items())},
        "env": {"image": step.options.image, "env": dict(sorted(step.options.env.items()))},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def lookup(
    client: Any, experiment_id: str, key: str, max_staleness_s: float | None
) -> records.StepRecord | None:
    """The newest successful execution with `key` whose output artifacts all still exist."""
    filter_string = (
        f"tags.`{records.TAG_CACHE_KEY}` = '{key}' and tags.`{records.TAG_STATE}` = 'SUCCEEDED' "
        "and attributes.status = 'FINISHED'"
    )
    if max_staleness_s is not None:
        filter_string += f" and attributes.end_time >= {int((time.time() - max_staleness_s) * 1000)}"
    runs = client.search_runs(
        [experiment_id], filter_string, order_by=["attributes.end_time DESC"], max_results=5
    )
    for run in runs:
        record = records.StepRecord.from_run(run)
        if outputs_exist(client, record):
            return record
    return None


def outputs_exist(client: Any, record: records.StepRecord) -> bool:
    """Whether every output artifact of `record` is still in the artifact store."""
    for entry in record.outputs.values():
        if not client.artifact_store(entry["run_id"]).exists(entry["path"]):
            return False
    return True
