"""Damaged stored outputs are never used. Each output's SHA-256 is recorded when its step writes it and checked
whenever the output is read back: a cached output that no longer matches is a cache miss (its step runs
again, with a warning that names the file), on a new run and on resume; a step whose input changed during
the run fails saying which file, without retrying; the CLI shows the warning as one line, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.artifacts.local import local_path_from_uri
from modelyard.pipelines import resume, run_pipeline
from modelyard.pipelines.integrity import CorruptOutput, CorruptOutputWarning
from modelyard.tracking.client import Client

from .helpers import HEADER, TAMPERED, load, pipeline_file

SOURCE = (
    HEADER
    + """
from pathlib import Path

import pandas as pd


@my.step
def vector(n: int) -> np.ndarray:
    return np.arange(n, dtype=float) * 2


@my.step(cache=False)
def total(v: np.ndarray, scale: float) -> float:
    return float(v.sum() * scale)


@my.pipeline
def sums(n: int = 100, scale: float = 1.0):
    total(vector(n), scale)


@my.step
def rows(n: int) -> list:
    return [{"i": i, "name": f"row-{i}"} for i in range(n)]  # over 1 KiB: read from its file, not inline


@my.step
def count(rows: list, ready: str) -> int:
    if not Path(ready).exists():
        raise RuntimeError("not ready")
    return len(rows)


@my.pipeline
def table(n: int = 200, ready: str = ""):
    count(rows(n), ready)


class Odd:
    def __init__(self, v):
        self.v = v


@my.step
def frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0, 3.0]})


@my.step
def note(folder: str) -> Path:
    path = Path(folder) / "note.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello")
    return path


@my.step
def odd() -> Odd:
    return Odd(3)


@my.step
def fit() -> Model:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 2.0, 4.0])


@my.step(cache=False)
def use(f: pd.DataFrame, p: Path, o: Odd, m: Model, r: list) -> float:
    return float(f["x"].sum()) + len(p.read_text()) + o.v + float(m.predict([[3.0]])[0]) + len(r)


@my.pipeline
def formats(folder: str = "/tmp"):
    use(frame(), note(folder), odd(), fit(), rows(200))
"""
    + TAMPERED
)


def _file(run: Any, instance: str, name: str = "output") -> Path:
    """The stored file (or folder) of an output, in the local artifact store."""
    entry = run.steps[instance].outputs[name]
    root = local_path_from_uri(Client().artifact_store(entry["run_id"]).root_uri)
    return root.joinpath(*entry["path"].split("/"))


def _states(run: Any) -> dict[str, str]:
    return {key: record.state for key, record in run.steps.items()}


def _overwrite_same_size(path: Path) -> None:
    """Other bytes of the same size: a header-valid .npy holding different numbers."""
    size = path.stat().st_size
    np.save(path, np.arange(100, dtype=float) + 7)  # sums to 5650.0 where the real output sums to 9900.0
    assert path.stat().st_size == size


def test_an_overwritten_cached_array_is_a_miss_and_the_downstream_step_gets_the_right_value(
    tmp_path: Path,
) -> None:
    pipe = load(pipeline_file(tmp_path, SOURCE), "sums")
    first = run_pipeline(pipe)
    assert first.ok and first.output("total") == 9900.0
    stored = _file(first, "vector")
    _overwrite_same_size(stored)

    with pytest.warns(CorruptOutputWarning) as caught:
        again = run_pipeline(pipe)
    assert again.ok, {k: r.error for k, r in again.steps.items()}
    assert _states(again) == {"vector": "SUCCEEDED", "total": "SUCCEEDED"}  # not CACHED: it ran again
    assert again.steps["vector"].cache == "miss"
    assert again.output("total") == 9900.0  # was 5650.0: the damaged bytes were used
    message = str(caught[0].message)
    assert str(stored) in message and "the step runs again" in message
    assert (
        first.steps["vector"].outputs["output"]["sha256"] in message
    )  # the recorded digest, and the found one
    assert _sha256(stored) in message

    # the new output is intact: the run after that is a plain hit again, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptOutputWarning)
        third = run_pipeline(pipe)
    assert _states(third) == {"vector": "CACHED", "total": "SUCCEEDED"}
    assert third.steps["vector"].cached_from == again.steps["vector"].run_id
    # reading the damaged output itself says what is wrong with it
    with pytest.raises(CorruptOutput, match=str(stored)):
        first.output("vector")


def test_a_truncated_json_output_is_recomputed_by_resume_and_by_the_next_run(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    pipe = load(pipeline_file(tmp_path, SOURCE), "table")
    params = {"ready": str(ready)}
    failed = run_pipeline(pipe, params)
    assert failed.status == "FAILED" and failed.steps["rows"].state == "SUCCEEDED"
    stored = _file(failed, "rows")
    assert "value" not in failed.steps["rows"].outputs["output"]  # too big to travel inline
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])  # a truncated write
    ready.write_text("yes")

    with pytest.warns(CorruptOutputWarning, match="cached output 'output' at " + str(stored)):
        resumed = resume(failed.run_id)
    assert resumed.ok, {k: r.error for k, r in resumed.steps.items()}
    assert resumed.steps["rows"].state == "SUCCEEDED"
    assert resumed.steps["rows"].run_id != failed.steps["rows"].run_id  # ran again, not reused
    assert resumed.output("count") == 200

    # the same damage to the recomputed output: a new run recomputes it too (was: JSONDecodeError, forever)
    again_stored = _file(resumed, "rows")
    again_stored.write_bytes(again_stored.read_bytes()[:100])
    also_ready = tmp_path / "also-ready"  # a new input for count, so it runs and reads rows
    also_ready.write_text("yes")
    with pytest.warns(CorruptOutputWarning) as caught:
        second = run_pipeline(pipe, {"ready": str(also_ready)})
    assert second.ok, {k: r.error for k, r in second.steps.items()}
    assert _states(second) == {"rows": "SUCCEEDED", "count": "SUCCEEDED"}
    assert second.output("count") == 200
    # both damaged candidates were checked once each and named
    named = {p for p in (str(stored), str(again_stored)) for w in caught if p in str(w.message)}
    assert named == {str(stored), str(again_stored)}
    assert len(caught) == 2


def test_an_input_damaged_during_the_run_fails_its_step_without_retries_and_resume_recomputes_it(
    tmp_path: Path, modelyard_home: Path
) -> None:
    pipe = load(pipeline_file(tmp_path, SOURCE), "tampered")
    run = run_pipeline(pipe, {"home": str(modelyard_home)})
    assert run.status == "FAILED"
    assert run.output("tamper") == 1
    step = run.steps["total_after"]
    stored = _file(run, "vector")
    assert step.state == "FAILED" and step.attempts == 1  # retries cannot help: the same bytes again
    assert (step.error or "").startswith(f"CorruptOutput: {stored} (input 'v' of step 'total_after') has")
    assert "modelyard pipelines resume" in (step.error or "")

    with pytest.warns(CorruptOutputWarning, match=str(stored)):
        resumed = resume(run.run_id)
    assert resumed.ok, {k: r.error for k, r in resumed.steps.items()}
    assert resumed.steps["vector"].run_id != run.steps["vector"].run_id  # recomputed
    assert resumed.steps["tamper"].run_id == run.steps["tamper"].run_id  # reused: it did not run again
    assert resumed.output("total_after") == 9900.0


def test_every_format_is_checked_and_intact_outputs_stay_cached(tmp_path: Path) -> None:
    pipe = load(pipeline_file(tmp_path, SOURCE), "formats")
    params = {"folder": str(tmp_path / "work")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pickled output's warning
        first = run_pipeline(pipe, params)
        assert first.ok, {k: r.error for k, r in first.steps.items()}
        warnings.simplefilter("error", CorruptOutputWarning)
        again = run_pipeline(pipe, params)
    expected = 6.0 + 5 + 3 + 6.0 + 200
    assert again.ok and again.output("use") == first.output("use") == expected
    formats = {key: r.outputs["output"]["format"] for key, r in again.steps.items() if key != "use"}
    assert formats == {
        "frame": "parquet-pandas",
        "note": "file",
        "odd": "pickle",
        "fit": "model",
        "rows": "json",
    }
    assert {key: state for key, state in _states(again).items() if key != "use"} == dict.fromkeys(
        formats, "CACHED"
    )

    # a file inside a folder output (the model's weights, a copied file) is covered by the folder's digest
    weights = next(p for p in _file(again, "fit").rglob("*") if p.is_file() and p.name != "model.yaml")
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    copied = _file(again, "note") / "note.txt"
    copied.write_text("HELLO")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = run_pipeline(pipe, params)
    corrupt = [str(w.message) for w in caught if issubclass(w.category, CorruptOutputWarning)]
    assert len(corrupt) == 2
    assert any(str(_file(again, "fit")) in m for m in corrupt)
    assert any(str(_file(again, "note")) in m for m in corrupt)
    states = _states(third)
    assert states["fit"] == states["note"] == "SUCCEEDED"
    assert states["frame"] == states["odd"] == states["rows"] == "CACHED"
    assert third.output("use") == expected


def test_the_cli_prints_the_warning_as_a_line_and_the_run_finishes(
    tmp_path: Path, modelyard_home: Path
) -> None:
    target = f"{pipeline_file(tmp_path, SOURCE)}:sums"
    env = {**os.environ, "MODELYARD_HOME": str(modelyard_home)}
    command = [sys.executable, "-m", "modelyard", "pipelines", "run", target, "--json"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    steps = {s["instance"]: s for s in json.loads(first.stdout)["steps"]}
    entry = steps["vector"]["outputs"]["output"]
    root = local_path_from_uri(Client().artifact_store(entry["run_id"]).root_uri)
    stored = root.joinpath(*entry["path"].split("/"))
    _overwrite_same_size(stored)

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    (line,) = [line for line in second.stderr.splitlines() if str(stored) in line]
    assert line.startswith("Warning: ")  # one line of its own, not Python's "file:line: Category:" form
    assert "Traceback" not in second.stderr and "warnings.warn" not in second.stderr
    steps = {s["instance"]: s for s in json.loads(second.stdout)["steps"]}
    assert steps["vector"]["state"] == "SUCCEEDED"
    assert steps["total"]["outputs"]["output"]["value"] == 9900.0


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
