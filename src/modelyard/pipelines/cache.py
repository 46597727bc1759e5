"""Step cache: the key of a step execution, and finding an earlier execution with that key whose outputs
still exist.

key = SHA-256 of: the step's name and qualified name, its code fingerprint, the content hash of each input
(literal values hashed as canonical JSON, artifacts by the SHA-256 of their bytes) and its declared
environment (image and env vars). The cache index is the tracking store itself: every executed step run carries
its key and output manifest as tags, so a lookup is one indexed search and the cache works the same on the
embedded store and through a server. A hit whose artifacts were deleted is a miss, and so is one whose
artifacts no longer match the SHA-256 recorded for them (checked in one streamed pass, with a warning that
names the file): the step runs again instead of passing damaged bytes on.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from typing import Any

from modelyard.errors import NotFound
from modelyard.pipelines import integrity, records
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
    client: Any,
    experiment_id: str,
    key: str,
    max_staleness_s: float | None,
    checked: dict[tuple[str, str], bool] | None = None,
) -> records.StepRecord | None:
    """The newest successful execution with `key` whose output artifacts are all still there, intact.
    `checked` remembers verdicts across calls (see `outputs_intact`)."""
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
        if outputs_intact(client, record, checked):
            return record
    return None


def outputs_intact(
    client: Any, record: records.StepRecord, checked: dict[tuple[str, str], bool] | None = None
) -> bool:
    """Whether every output artifact of `record` is still in the artifact store with the SHA-256 recorded
    for it. Each is read once, streamed; one that changed gets a `CorruptOutputWarning` naming it. `checked`
    maps (run id, path) to an earlier verdict, so a file is read (and warned about) once per pipeline run."""
    memo = {} if checked is None else checked
    for name, entry in record.outputs.items():
        where = (str(entry["run_id"]), str(entry["path"]))
        if where not in memo:
            memo[where] = _intact(client, record, name, entry)
        if not memo[where]:
            return False
    return True


def _intact(client: Any, record: records.StepRecord, name: str, entry: dict[str, Any]) -> bool:
    store = client.artifact_store(entry["run_id"])
    try:
        actual = integrity.stored_digest(store, entry["path"], entry["format"])
    except NotFound:  # deleted (e.g. by `modelyard gc`): a plain miss
        return False
    expected = entry.get("sha256")
    if expected is None or actual == expected:
        return True
    warnings.warn(
        f"step {record.instance!r}: its cached output {name!r} at {integrity.location(store, entry['path'])} "
        f"has SHA-256 {actual}, not the {expected} recorded when step run {entry['run_id']} wrote it (it was "
        "changed or damaged since). Not using it: a cache miss, so the step runs again unless an older cached "
        "result is intact.",
        integrity.CorruptOutputWarning,
        stacklevel=1,  # shown with this line: no frame of the caller's says more
    )
    return False
