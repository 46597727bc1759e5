"""The Kubeflow Pipelines backend: compiled with the real kfp SDK and checked against its protobuf schema, the
step runner run for real as a subprocess against a local tracking store, and submission against a fake KFP
REST API that this test owns (no cluster is available here)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

kfp = pytest.importorskip("kfp")
yaml = pytest.importorskip("yaml")

from google.protobuf import json_format  # noqa: E402
from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: E402

from modelyard.errors import InvalidArgument  # noqa: E402
from modelyard.pipelines import kfp as kfp_backend  # noqa: E402
from modelyard.pipelines.loading import load_pipeline  # noqa: E402

PIPELINE = '''
from typing import NamedTuple

import modelyard as my
from modelyard.pipelines import Dataset, Metrics, Model


class Const:
    def __init__(self, value):
        self.value = value

    def predict(self, inputs):
        return [self.value for _ in inputs]


class Split(NamedTuple):
    train: Dataset
    rows: int


class Scored(NamedTuple):
    model: Model
    score: float


@my.step(retries=3, retry_delay="10s", retry_backoff=3, max_retry_delay="2m", env={"LOG_LEVEL": "debug"})
def load(source: str, limit: int = 100) -> Split:
    return Split([[i, i * 2] for i in range(limit)], limit)


@my.step(cache=False, cpu=2, memory="4Gi", gpu=1, image="registry.example.com/train:gpu", timeout="30m")
def train(data: Dataset, lr: float, seed: int = 0) -> Scored:
    return Scored(Const(lr), 0.5 + lr + len(data) / 1000)


@my.step(cpu=0.5)
def evaluate(data: Dataset, seed: int) -> float:
    return seed / 10


@my.step
def pick(scores: list[float], models: list[Model]) -> Scored:
    best = max(range(len(scores)), key=lambda i: scores[i])
    return Scored(models[best], scores[best])


@my.step
def publish(model: Model, name: str) -> Metrics:
    return {"published": 1}


@my.step
def report(values: list, message: str) -> str:
    return f"{message}: {values}"


@my.pipeline
def training(source: str = "s3://bucket/data.csv", limit: int = 100, min_score: float = 0.7,
             seeds: list = [1, 2], name: str = "iris"):
    """Train per config, evaluate per seed, keep the best model and publish it when good enough."""
    data = load(source, limit)
    with my.parallel_for([{"lr": 0.1}, {"lr": 0.01}], name="per_config") as config:
        trained = train(data.outputs.train, config["lr"])
    with my.parallel_for(seeds, name="per_seed") as seed:
        evaluate(data.outputs.train, seed)
    best = pick(my.collect(trained.outputs.score), my.collect(trained.outputs.model))
    with my.condition(best.outputs.score >= 0.6):
        publish(best.outputs.model, name)
    report([best.outputs.score, data.outputs.rows, 3], "done").after(data)
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project folder holding the pipeline file, and the working directory (as for the CLI)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train_pipe.py").write_text(PIPELINE)
    monkeypatch.chdir(folder)
    return folder


def compiled(project: Path, **kwargs: Any) -> tuple[Path, dict[str, Any]]:
    pipeline = load_pipeline("train_pipe.py:training")
    out = kfp_backend.compile_pipeline(
        pipeline, project / "training.yaml", image="registry.example.com/base:1", **kwargs
    )
    return out, yaml.safe_load(out.read_text())


def executor(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["deploymentSpec"]["executors"][f"exec-{name}"]["container"]  # type: ignore[no-any-return]


def arg_after(args: list[str], flag: str, name: str) -> list[str]:
    """The tokens after `flag NAME` in a container's args."""
    for n, token in enumerate(args):
        if token == flag and args[n + 1] == name:
            return args[n + 2 : n + 4]
    raise AssertionError(f"no {flag} {name} in {args}")


def test_compiles_to_a_valid_pipeline_spec(project: Path) -> None:
    path, doc = compiled(project, tracking_uri="http://modelyard:5000", experiment="nightly")
    component = kfp.components.load_component_from_file(str(path))
    assert set(component.component_spec.inputs) == {
        "source",
        "limit",
        "min_score",
        "seeds",
        "name",
        "per_config_items",
    }
    spec = json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    assert spec.pipeline_info.name == "training"
    assert doc["root"]["inputDefinitions"]["parameters"]["per_config_items"]["defaultValue"] == [
        {"lr": 0.1},
        {"lr": 0.01},
    ]


def test_maps_steps_options_and_control_flow(project: Path) -> None:
    _, doc = compiled(project, tracking_uri="http://modelyard:5000", experiment="nightly")
    spec = json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    root = spec.root.dag.tasks

    retry = root["load"].retry_policy
    assert retry.max_retry_count == 3
    assert retry.backoff_duration.seconds == 10
    assert retry.backoff_factor == 3.0
    # KFP's max duration is the whole retry window: the delays (10+30+90 s) plus four 1-hour attempts
    assert retry.backoff_max_duration.seconds == 130 + 4 * 3600
    assert root["load"].caching_options.enable_cache is True

    loops = {name: task for name, task in root.items() if name.startswith("for-loop")}
    iterators = {t.parameter_iterator.items.input_parameter for t in loops.values()}
    assert iterators == {"pipelinechannel--per_config_items", "pipelinechannel--seeds"}
    config_loop = next(
        n for n, t in loops.items() if "per_config" in t.parameter_iterator.items.input_parameter
    )
    train = spec.components["comp-" + config_loop].dag.tasks["train"]
    assert train.caching_options.enable_cache is False
    assert train.inputs.parameters["lr"].parameter_expression_selector == 'parseJson(string_value)["lr"]'

    condition = next(t for n, t in root.items() if n.startswith("condition"))
    assert (
        condition.trigger_policy.condition == "inputs.parameter_values['pipelinechannel--pick-score'] >= 0.6"
    )
    pick = root["pick"]
    assert pick.inputs.parameters["scores"].task_output_parameter.producer_task == config_loop
    pick_inputs = spec.components["comp-pick"].input_definitions.parameters
    assert pick_inputs["scores"].parameter_type == pipeline_spec_pb2.ParameterType.LIST
    assert pick_inputs["models"].parameter_type == pipeline_spec_pb2.ParameterType.LIST
    assert "load" in root["report"].dependent_tasks  # .after(data)

    # value outputs are typed parameters; artifacts travel as JSON references in strings
    outputs = doc["components"]["comp-load"]["outputDefinitions"]["parameters"]
    assert outputs == {"train": {"parameterType": "STRING"}, "rows": {"parameterType": "NUMBER_INTEGER"}}

    gpu = executor(doc, "train")
    assert gpu["image"] == "registry.example.com/train:gpu"
    assert gpu["command"] == ["python", "-m", "modelyard.pipelines.kfp"]
    assert gpu["resources"]["resourceCpuLimit"] == "2"
    assert gpu["resources"]["resourceMemoryLimit"] == "4Gi"
    assert gpu["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert gpu["resources"]["accelerator"]["resourceCount"] == "1"
    args = gpu["args"]
    assert args[:4] == ["--step", "_modelyard_file_train_pipe:train", "--file", "train_pipe.py"]
    assert args[args.index("--timeout") + 1] == "1800"
    assert args[args.index("--tracking-uri") + 1] == "http://modelyard:5000"
    assert args[args.index("--experiment") + 1] == "nightly"
    assert args[args.index("--kfp-run") + 1] == "{{$.pipeline_job_uuid}}"
    assert "--in-loop" in args
    assert arg_after(args, "--input", "data") == ["ref", "{{$.inputs.parameters['data']}}"]
    assert arg_after(args, "--input", "lr") == ["float", "{{$.inputs.parameters['lr']}}"]

    load = executor(doc, "load")
    assert load["image"] == "registry.example.com/base:1"
    assert load["env"] == [{"name": "LOG_LEVEL", "value": "debug"}]
    assert "resources" not in load
    assert executor(doc, "evaluate")["resources"]["resourceCpuLimit"] == "500m"

    report = executor(doc, "report")["args"]  # a static list with references: one input per element
    items = [report[n + 1 : n + 4] for n, t in enumerate(report) if t == "--item"]
    assert items == [
        ["values", "float", "{{$.inputs.parameters['values_0']}}"],
        ["values", "int", "{{$.inputs.parameters['values_1']}}"],
        ["values", "json", "3"],
    ]
    assert arg_after(report, "--input", "message") == ["str", "done"]


def with_options(pipeline: Any, step: str, **changes: Any) -> None:
    """Change a step's options past the DSL's own checks (to reach the compiler's)."""
    module = sys.modules[pipeline.func.__module__]
    target = getattr(module, step)
    target.options = dataclasses.replace(target.options, **changes)


def test_bad_inputs_are_clear_errors(project: Path) -> None:
    pipeline = load_pipeline("train_pipe.py:training")
    out = project / "x.yaml"
    with pytest.raises(InvalidArgument, match=r"no container image.*--image"):
        kfp_backend.compile_pipeline(pipeline, out)

    with_options(pipeline, "load", memory="1.5GB")
    with pytest.raises(InvalidArgument, match=r"Step 'load': memory '1.5GB' is not a Kubernetes quantity"):
        kfp_backend.compile_pipeline(pipeline, out, image="img")
    with_options(pipeline, "load", memory="1.5Gi")  # fractional: converted to whole bytes
    kfp_backend.compile_pipeline(pipeline, out, image="img")
    assert (
        executor(yaml.safe_load(out.read_text()), "load")["resources"]["resourceMemoryLimit"] == "1610612736"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def bad(Rate: float = 1.0):\n    step_a(Rate)", r"parameter 'Rate'.*rename it.*'rate'"),
        ("def bad(x=None):\n    step_a(1.0)", r"parameter 'x' is any.*annotated"),
        (
            "def bad():\n    u = step_u()\n    with my.condition(u.output == 1):\n        step_a(1.0)",
            r"Condition on 'step_u'.*declared any.*annotate it int, float, bool or str",
        ),
        (
            "def bad():\n    u = step_u()\n    with my.parallel_for(u.output) as i:\n        step_a(1.0)",
            r"parallel_for 'loop'.*annotate it as list",
        ),
        (
            "def bad():\n    a = step_a(1.0)\n    with my.condition(a.output > 1):\n        b = step_a(2.0)\n"
            "    step_a(3.0).after(b)",
            r"Step 'step_a-3' \(.after\(\)\) needs 'step_a-2', which only runs when step_a.output > 1",
        ),
        (
            "def bad():\n    a = step_a(1.0)\n    with my.condition(a.output > 1):\n        b = step_a(2.0)\n"
            "    step_a(b.output)",
            r"Step 'step_a-3' \(argument 'x'\) needs 'step_a-2'.*inside that my.condition block",
        ),
    ],
)
def test_unmappable_pipelines_are_rejected(project: Path, body: str, message: str) -> None:
    source = textwrap.dedent(
        """
        import modelyard as my

        @my.step
        def step_a(x: float) -> float:
            return x

        @my.step
        def step_u():
            return 1

        @my.pipeline
        """
    )
    (project / "bad.py").write_text(source + body + "\n")
    pipeline = load_pipeline("bad.py:bad")
    with pytest.raises(InvalidArgument, match=message):
        kfp_backend.compile_pipeline(pipeline, project / "bad.yaml", image="img")


def test_missing_kfp_names_the_extra(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = load_pipeline("train_pipe.py:training")
    monkeypatch.setitem(sys.modules, "kfp", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'modelyard\[kfp\]'"):
        kfp_backend.compile_pipeline(pipeline, project / "x.yaml", image="img")


# -- the step runner, for real -------------------------------------------------------------------------------
def run_step(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.pipelines.kfp", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_step_runner_chains_steps_through_output_files(project: Path, modelyard_home: Path) -> None:
    from modelyard import config
    from modelyard.tracking.client import Client

    uri = config.tracking_uri()
    common = ["--file", "train_pipe.py", "--experiment", "kfp-test", "--tracking-uri", uri]
    out = project / "kfp-outputs"
    first = run_step(
        project,
        *["--step", "_modelyard_file_train_pipe:load", "--instance", "load", *common],
        *["--kfp-run", "run-123", "--kfp-task", "task-1"],
        *["--input", "source", "str", "s3://bucket/x.csv", "--input", "limit", "int", "5"],
        *[
            "--output",
            "train",
            "dataset",
            str(out / "load/train"),
            "--output",
            "rows",
            "int",
            str(out / "load/rows"),
        ],
    )
    assert first.returncode == 0, first.stderr
    assert (out / "load/rows").read_text() == "5"
    ref = json.loads((out / "load/train").read_text())
    assert set(ref) >= {"run_id", "path", "format", "sha256", "uri"}
    assert ref["path"] == "outputs/train.json" and ref["uri"].endswith("/outputs/train.json")

    second = run_step(
        project,
        *["--step", "_modelyard_file_train_pipe:train", "--instance", "train", "--in-loop", *common],
        *["--kfp-run", "run-123", "--kfp-task", "abcdef0123456789", "--timeout", "60"],
        *["--input", "data", "ref", (out / "load/train").read_text(), "--input", "lr", "float", "0.25"],
        *[
            "--output",
            "model",
            "model",
            str(out / "train/model"),
            "--output",
            "score",
            "float",
            str(out / "train/score"),
        ],
    )
    assert second.returncode == 0, second.stderr
    assert float((out / "train/score").read_text()) == pytest.approx(0.5 + 0.25 + 5 / 1000)
    model_ref = json.loads((out / "train/model").read_text())
    assert model_ref["format"] == "model"

    third = run_step(  # collected fan-in: a JSON list of references and a JSON list of numbers
        project,
        *["--step", "_modelyard_file_train_pipe:pick", "--instance", "pick", *common],
        *["--input", "scores", "list", "[0.3, 0.755]"],
        *["--input", "models", "refs", json.dumps([json.dumps(model_ref), model_ref])],
        *[
            "--output",
            "model",
            "model",
            str(out / "pick/model"),
            "--output",
            "score",
            "float",
            str(out / "pick/score"),
        ],
    )
    assert third.returncode == 0, third.stderr
    assert (out / "pick/score").read_text() == "0.755"

    fourth = run_step(
        project,
        *["--step", "_modelyard_file_train_pipe:report", "--instance", "report", *common],
        *[
            "--item",
            "values",
            "float",
            "0.755",
            "--item",
            "values",
            "int",
            "5",
            "--item",
            "values",
            "json",
            "3",
        ],
        *["--input", "message", "str", "done"],
        *["--output", "output", "str", str(out / "report/output")],
    )
    assert fourth.returncode == 0, fourth.stderr
    assert (out / "report/output").read_text() == "done: [0.755, 5, 3]"

    client = Client(uri)
    runs = {r.data.tags["modelyard.step.instance"]: r for r in client.search_runs(["kfp-test"], "")}
    assert set(runs) == {"load", "train[abcdef01]", "pick", "report"}
    load_run = runs["load"]
    assert load_run.info.status.value == "FINISHED"
    assert load_run.data.tags["modelyard.step.state"] == "SUCCEEDED"
    assert load_run.data.tags["modelyard.kfp.run_id"] == "run-123"
    assert load_run.data.tags["modelyard.kfp.task_id"] == "task-1"
    assert json.loads(load_run.data.tags["modelyard.step.outputs"])["rows"]["value"] == 5
    assert load_run.data.params["limit"] == "5"
    assert runs["train[abcdef01]"].data.tags["modelyard.step.id"] == "train"


def test_step_runner_enforces_timeout_and_reports_failure(project: Path, modelyard_home: Path) -> None:
    from modelyard import config
    from modelyard.tracking.client import Client

    (project / "slow.py").write_text(
        "import time\nimport modelyard as my\n\n@my.step\ndef nap(s: float) -> int:\n    time.sleep(s)\n    return 1\n"
    )
    uri = config.tracking_uri()
    result = run_step(
        project,
        *["--step", "_modelyard_file_slow:nap", "--file", "slow.py", "--instance", "nap"],
        *["--experiment", "kfp-test", "--tracking-uri", uri, "--timeout", "0.5"],
        *["--input", "s", "float", "30", "--output", "output", "int", str(project / "nap-out")],
    )
    assert result.returncode == 1
    assert "StepTimeout" in result.stderr
    assert not (project / "nap-out").exists()
    (run,) = Client(uri).search_runs(["kfp-test"], "")
    assert run.info.status.value == "FAILED"
    assert run.data.tags["modelyard.step.state"] == "FAILED"
    assert "timeout of 0.5s" in run.data.tags["modelyard.step.error"]


def test_text_decoding_and_encoding() -> None:
    assert kfp_backend._decode("3", "float") == {"value": 3.0}
    assert kfp_backend._decode("3.0", "int") == {"value": 3}
    assert kfp_backend._decode("true", "bool") == {"value": True}
    assert kfp_backend._decode('{"a": 1}', "dict") == {"value": {"a": 1}}
    assert kfp_backend._decode("not json", "auto") == {"value": "not json"}
    assert kfp_backend._decode("[1]", "auto") == {"value": [1]}
    assert kfp_backend._decode("  x ", "str") == {"value": "  x "}
    assert kfp_backend._encode(3, "int", "n") == "3"
    assert kfp_backend._encode(3.0, "int", "n") == "3"
    assert kfp_backend._encode(2, "float", "n") == "2.0"
    assert kfp_backend._encode(False, "bool", "b") == "false"
    assert kfp_backend._encode({"a": [1, 2]}, "dict", "d") == '{"a":[1,2]}'
    for value, kind in [(1.5, "int"), (None, "float"), (1, "str"), ("x", "list"), (1, "bool")]:
        with pytest.raises(TypeError, match="declared"):
            kfp_backend._encode(value, kind, "o")


# -- submitting, against a fake KFP API ------------------------------------------------------------------------
class FakeKFP:
    """The v2beta1 endpoints kfp.Client(host).create_run_from_pipeline_package calls."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = fake.handle(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply("GET")

            def do_POST(self) -> None:
                self._reply("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, method: str, raw: str, body: Any) -> tuple[int, dict[str, Any]]:
        path = urlparse(raw).path.rstrip("/")
        self.requests.append((method, path))
        if path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and path == "/apis/v2beta1/experiments":
            return 200, {}  # none yet: the client creates it
        if method == "POST" and path == "/apis/v2beta1/experiments":
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if method == "POST" and path == "/apis/v2beta1/runs":
            run = {**body, "run_id": f"run-{len(self.runs) + 1}", "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        return 404, {"error": f"no route {method} {path}", "code": 5}


@pytest.fixture
def fake_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKFP]:
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    fake = FakeKFP()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_submit_sends_spec_and_parameters(
    project: Path, fake_kfp: FakeKFP, capsys: pytest.CaptureFixture[str]
) -> None:
    path, doc = compiled(project)
    run_id = kfp_backend.submit(
        path, fake_kfp.host, experiment="nightly", run_name="try-1", params={"min_score": 0.8, "seeds": [3]}
    )
    assert run_id == "run-1"
    run = fake_kfp.runs[run_id]
    assert run["pipeline_spec"] == doc
    assert run["runtime_config"] == {"parameters": {"min_score": 0.8, "seeds": [3]}}
    assert run["display_name"] == "try-1"
    assert fake_kfp.experiments[run["experiment_id"]]["display_name"] == "nightly"
    assert ("POST", "/apis/v2beta1/runs") in fake_kfp.requests
    assert capsys.readouterr().out == ""  # kfp's printed links are swallowed

    with pytest.raises(InvalidArgument, match=r"no parameter nope; its parameters:"):
        kfp_backend.submit(path, fake_kfp.host, params={"nope": 1})
