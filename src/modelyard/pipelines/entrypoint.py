"""The step entry point: runs one step in a fresh process, as the local executor, Ray and Kubeflow
Pipelines containers all do.

    python -m modelyard.pipelines.entrypoint --task task.json

The task file names the step's code, the tracking URI and the step's run, and each input (a literal value, or
a reference to an output stored in the artifact store). The step's outputs are written to its run's artifacts
under `outputs/`, and a result file records their formats and content hashes (or the error).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from modelyard.pipelines import integrity, serialize

loading_step_code: str | None = None  # the step whose module is being imported in this process


def import_code(ref: dict[str, Any]) -> Any:
    """The object `qualname` of a module, importing the module by name or from its file."""
    module_name, file = ref["module"], ref.get("file")
    module = sys.modules.get(module_name)
    if module is None:
        if file:
            folder = str(Path(file).parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # so the file's own sibling imports work
            spec = importlib.util.spec_from_file_location(module_name, file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    obj: Any = module
    for part in ref["qualname"].split("."):
        obj = getattr(obj, part)
    return obj


def load_input(spec: dict[str, Any], client: Any, scratch: Path) -> Any:
    """An input's value: a literal, or a stored output copied under `scratch` (checked against its recorded
    SHA-256 while it is copied: `integrity.CorruptOutput` when it changed) and loaded."""
    if "list" in spec:
        return [load_input(item, client, scratch) for item in spec["list"]]
    if "value" in spec:
        return Path(spec["value"]) if spec.get("path") else spec["value"]
    ref = spec["artifact"]
    if "value" in ref:
        return ref["value"]
    dest = Path(tempfile.mkdtemp(dir=scratch))
    local = integrity.fetch(client.artifact_store(ref["run_id"]), ref, dest)
    if ref["format"] in ("file", "dir"):
        children = list(local.iterdir())
        return children[0] if len(children) == 1 else local
    return serialize.read(local, ref["format"])


def split_outputs(result: Any, names: list[str], step: str) -> dict[str, Any]:
    if not names:
        return {}
    if len(names) == 1 and names[0] == "output":
        return {"output": result}
    if isinstance(result, dict):
        values = result
    elif isinstance(result, tuple) and len(result) == len(names):
        values = dict(zip(names, result))
    else:
        raise TypeError(
            f"step {step!r} must return its outputs {names} (a NamedTuple), got {type(result).__name__}"
        )
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"step {step!r} did not return outputs {missing}")
    return {n: values[n] for n in names}


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run the step described by `task`; returns the result (also written to task["result"] when set)."""
    from modelyard.tracking import fluent

    started = time.time()
    fluent.set_tracking_uri(task["tracking_uri"])
    client = fluent.get_client()
    run_id = task["run_id"]
    global loading_step_code
    try:
        loading_step_code = task["instance"]
        try:
            step = import_code(task["step"])
        finally:
            loading_step_code = None
        func = getattr(step, "func", step)
        with tempfile.TemporaryDirectory(prefix="modelyard-step-") as tmp:
            scratch = Path(tmp)
            inputs = {name: _load(name, spec, client, scratch, task) for name, spec in task["inputs"].items()}
            with fluent.start_run(run_id=run_id):
                result = func(**inputs)
                values = split_outputs(result, list(task["outputs"]), task["instance"])
                manifest = _store_outputs(values, task, client, scratch / "outputs")
        outcome: dict[str, Any] = {"ok": True, "outputs": manifest}
    except BaseException as exc:  # the step's own failure, reported to the orchestrator
        traceback.print_exc()
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        if isinstance(exc, KeyboardInterrupt):
            outcome["error"] = "cancelled"
        if isinstance(exc, integrity.CorruptOutput):
            outcome["retry"] = False  # the same bytes again: a new run or resume recomputes the input
    finally:
        fluent.flush()
    outcome["seconds"] = round(time.time() - started, 3)
    if task.get("result"):
        Path(task["result"]).write_text(json.dumps(outcome))
    return outcome


def _load(name: str, spec: dict[str, Any], client: Any, scratch: Path, task: dict[str, Any]) -> Any:
    try:
        return load_input(spec, client, scratch)
    except integrity.CorruptOutput as exc:  # say which input, without our frames
        detail = f" (input {name!r} of step {task['instance']!r})"
        raise integrity.CorruptOutput(exc.location, exc.expected, exc.actual, detail) from None


def _store_outputs(values: dict[str, Any], task: dict[str, Any], client: Any, folder: Path) -> dict[str, Any]:
    run_id = task["run_id"]
    store = client.artifact_store(run_id)
    manifest: dict[str, Any] = {}
    for name, value in values.items():
        kind = task["outputs"][name]
        written = serialize.write(value, kind, folder, name, f"step {task['instance']!r}")
        path = f"outputs/{written.path.name}"
        if written.path.is_dir():
            store.put_dir(written.path, path)
        else:
            store.put_file(written.path, path)
        entry: dict[str, Any] = {"path": path, "format": written.format, "sha256": written.sha256}
        if written.inline:
            entry["value"] = written.value
        manifest[name] = entry
        if kind == "metrics" and isinstance(value, dict):
            numbers = {k: float(v) for k, v in value.items() if isinstance(v, (int, float))}
            client.log_metrics(run_id, numbers)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard.pipelines.entrypoint", description=__doc__)
    parser.add_argument("--task", required=True, help="the task file written by the executor")
    args = parser.parse_args(argv)
    task = json.loads(Path(args.task).read_text())
    outcome = run_task(task)
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
