"""`modelyard serve`: its options and errors (click's CliRunner), and real server processes driven by a real
Open Inference Protocol client (tritonclient) and plain HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import numpy as np
import pytest
from click.testing import CliRunner

import modelyard as my
from modelyard.cli.main import ModelyardGroup
from modelyard.cli.serve import model_identity, serve
from modelyard.models import log_model, save_model
from tests.server.live import free_port
from tests.serving.models import TextLength

REPO = Path(__file__).resolve().parents[2]


def cli_with_serve() -> click.Group:
    """A root group like `modelyard`'s, holding only `serve` (errors become one red line)."""
    group = ModelyardGroup("modelyard")
    group.add_command(serve)
    return group


def test_help_shows_examples():
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for text in (
        "models:/iris@champion",
        "--max-batch-size",
        "--max-batch-delay-ms",
        "--max-queue",
        "--timeout-ms",
    ):
        assert text in result.output


def test_errors_are_one_line_without_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli_with_serve(), ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "Error: No model folder at" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli_with_serve(), ["serve", str(tmp_path), "--max-batch-size", "0"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_model_identity(tmp_path):
    assert model_identity(str(tmp_path / "scorer"), None) == ("scorer", "1", str(tmp_path / "scorer"))
    assert model_identity("runs:/abc/model", "iris") == ("iris", "1", "runs:/abc/model")
    assert model_identity("runs:/abc/model", None)[0] == "model"


class ServeProcess:
    """`modelyard serve ...` in a child process (the command imported from its module, as the CLI runs it)."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = "import sys; from modelyard.cli.serve import serve; serve(sys.argv[1:])"
        self.log = Path(os.environ["MODELYARD_HOME"]).parent / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:  # a file, not a pipe: a pipe nobody reads blocks a chatty server
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, *args, "--port", str(self.port)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not become ready: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> bool:
        """Stop it with SIGTERM; whether it shut down cleanly (drained, then exited with status 0)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode == 0 and "Traceback" not in self.output()


@pytest.fixture
def logged_iris(iris) -> str:
    with my.start_run(capture=False):
        return log_model(iris.model, "model", input_example=iris.X.head(3)).model_uri


@pytest.fixture
def iris_server(logged_iris) -> Iterator[ServeProcess]:
    server = ServeProcess(
        logged_iris, "--name", "iris", "--trusted", "--max-batch-delay-ms", "2", "--max-request-mb", "0.01"
    )
    yield server
    assert server.stop(), server.output()


@pytest.mark.slow
def test_real_server_with_an_oip_client(iris, iris_server):
    httpclient = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]'")
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{iris_server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris") and client.is_model_ready("iris", "1")
        meta = client.get_model_metadata("iris")
        assert meta["name"] == "iris" and meta["versions"] == ["1"] and len(meta["inputs"]) == 4
        assert client.get_server_metadata()["name"] == "modelyard"
        rows = iris.rows[48:53].astype(np.float32)
        for binary in (False, True):  # JSON data, and the binary tensor data extension (the client's default)
            tensor = httpclient.InferInput("x", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            result = client.infer("iris", [tensor], request_id=f"r-{binary}")
            np.testing.assert_array_equal(result.as_numpy("output-0"), iris.expected[48:53])
            assert result.get_response()["id"] == f"r-{binary}"
        with pytest.raises(Exception, match="Unknown model 'nope'"):
            client.get_model_metadata("nope")
    finally:
        client.close()
    # small keep-alive requests are answered without Nagle's ~40 ms delay (see DESIGN: TCP_NODELAY)
    with httpx.Client(base_url=iris_server.url) as http:
        body = {"instances": iris.rows[:1].tolist()}
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            assert http.post("/v1/models/iris:predict", json=body).status_code == 200
            timings.append(time.perf_counter() - started)
        assert sorted(timings)[10] < 0.03, timings
        big = http.post("/v1/models/iris:predict", json={"instances": np.tile(iris.rows, (10, 1)).tolist()})
        assert big.status_code == 413 and "takes at most 10,485 (" in big.json()["error"], big.text


@pytest.mark.slow
def test_real_server_bytes_tensors_and_graceful_stop(tmp_path):
    httpclient = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]'")
    folder = tmp_path / "text-model"
    save_model(TextLength(), folder, input_example=np.array(["ab", "c"], dtype=object))
    server = ServeProcess(str(folder), "--trusted")
    try:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        texts = np.array(["héllo".encode(), b"ok", b""], dtype=object)
        tensor = httpclient.InferInput("input-0", [3], "BYTES")
        tensor.set_data_from_numpy(texts)
        outputs = [httpclient.InferRequestedOutput("length"), httpclient.InferRequestedOutput("upper")]
        result = client.infer("text-model", [tensor], outputs=outputs)
        assert result.as_numpy("length").tolist() == [5, 2, 0]
        assert [str(u) for u in result.as_numpy("upper")] == ["HÉLLO", "OK", ""]
        client.close()
        response = httpx.post(server.url + "/invocations", json={"inputs": ["abc"]})
        assert response.json() == {"predictions": {"length": [3], "upper": ["ABC"]}}
    finally:
        assert server.stop(), server.output()
    assert "Serving text-model version 1" in server.output()


def test_models_uri_is_pinned_to_the_version_it_names(iris):
    from modelyard.registry.client import RegistryClient

    with my.start_run(capture=False):
        log_model(iris.model, "model", input_example=iris.X.head(3), registered_model_name="iris")
        log_model(iris.model, "model2", input_example=iris.X.head(3), registered_model_name="iris")
    RegistryClient().set_alias("iris", "champion", 1)
    assert model_identity("models:/iris@champion", None) == ("iris", "1", "models:/iris/1")
    assert model_identity("models:/iris/latest", "flowers") == ("flowers", "2", "models:/iris/2")


def test_model_threads_default_to_one_unless_the_user_chose(monkeypatch):
    from modelyard.cli.serve import limit_model_threads

    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    limit_model_threads(None)
    assert [os.environ[name] for name in names] == ["1", "1", "1"]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS")
    limit_model_threads(None)  # the user's setting stands
    assert os.environ["OMP_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in os.environ
    limit_model_threads(2)  # --model-threads wins
    assert [os.environ[name] for name in names] == ["2", "2", "2"]


def test_a_busy_port_is_one_error_line_and_nothing_is_served_or_recorded(iris):
    import socket

    from modelyard.registry.deployments import deployment_store_for

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli_with_serve(), ["serve", str(iris.folder), "--trusted", "--port", str(port)]
        )
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith(f"Error: Cannot serve on 127.0.0.1:{port}: the port is in use"), line
    assert "Serving" not in result.output and "Errno" not in result.output
    assert deployment_store_for().list_deployments() == []  # no deployment that never served
